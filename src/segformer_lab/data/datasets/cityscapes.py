"""Cityscapes in its official layout, fine annotations mapped to the 19 training classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import IGNORE_INDEX, DataError, decode_mask
from ..palettes import CITYSCAPES_CLASSES, CITYSCAPES_TRAIN_IDS
from .base import SegmentationDataset, Transform, split_name

IMAGE_SUFFIX, LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"

# label id -> train id for every byte value: the 19 classes, everything else ignored
TRAIN_ID_TABLE = np.full(256, IGNORE_INDEX, dtype=np.uint8)
TRAIN_ID_TABLE[list(CITYSCAPES_TRAIN_IDS)] = list(CITYSCAPES_TRAIN_IDS.values())


class CityscapesDataset(SegmentationDataset):
    """``root/leftImg8bit/{train,val,test}/CITY/NAME_leftImg8bit.png`` with
    ``root/gtFine/SPLIT/CITY/NAME_gtFine_labelIds.png``; label ids become the 19 train ids
    (road 0 ... bicycle 18), every other id (void, parking, rail track, guard rail, bridge,
    tunnel, polegroup, caravan, trailer, license plate) becomes 255. The other files of
    ``gtFine`` (``_color``, ``_instanceIds``, ``_polygons.json``) are not read. Splits:
    train, val, test (whose public labels are all void); ``validation`` means val."""

    split_aliases = {"validation": "val", "training": "train"}

    def __init__(self, root: str | Path, split: str = "train", *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, skip_bad: bool = False):
        self.root, self.split = Path(root), split_name(split, self.split_aliases)
        super().__init__(CITYSCAPES_CLASSES, transforms=transforms, num_classes=num_classes,
                         skip_bad=skip_bad, where=str(self.root))
        self.samples = self._pair(self.root / "leftImg8bit" / self.split, self.root / "gtFine" / self.split)
        self._finish_construction(str(self.root / "leftImg8bit" / self.split))

    @classmethod
    def splits(cls, root: str | Path) -> list[str]:
        """The labelled splits on disk (test's public labels are all void)."""
        found = Path(root) / "leftImg8bit"
        return [s for s in ("train", "val") if (found / s).is_dir()] if found.is_dir() else []

    def _pair(self, image_dir: Path, label_dir: Path) -> list[tuple[Path, Path]]:
        if not image_dir.is_dir():
            raise DataError(str(image_dir), f"split directory not found (split {self.split!r}; expected the "
                                            f"official layout leftImg8bit/{{train,val,test}}/CITY/)")
        images = {p.relative_to(image_dir).as_posix()[: -len(IMAGE_SUFFIX)]: p
                  for p in sorted(image_dir.glob(f"*/*{IMAGE_SUFFIX}"))}
        labels = {p.relative_to(label_dir).as_posix()[: -len(LABEL_SUFFIX)]: p
                  for p in sorted(label_dir.glob(f"*/*{LABEL_SUFFIX}"))} if label_dir.is_dir() else {}
        def expected(image: Path) -> Path:
            return label_dir / image.parent.name / (image.name[: -len(IMAGE_SUFFIX)] + LABEL_SUFFIX)

        return self._match(images, labels, image_dir, label_dir, f"*{LABEL_SUFFIX}", expected)

    def sources(self, ref: tuple[Path, Path]) -> tuple[Path, Path, str, str]:
        return ref[0], ref[1], str(ref[0]), str(ref[1])

    @property
    def stores_labels(self) -> bool:
        return False  # label ids, mapped to train ids

    def decode_labels(self, source: Path, name: str) -> np.ndarray:
        return TRAIN_ID_TABLE[decode_mask(source, name)]

    def __repr__(self) -> str:
        return f"CityscapesDataset(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"
