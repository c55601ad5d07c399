"""Folder datasets: the users' own ``images/`` + ``masks/`` layout, and ADE20K as distributed."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..ade20k import ADE20K_CLASSES, ADE20K_SPLITS
from ..io import IMAGE_SUFFIXES, DataError, decode_image, read_text, warn
from ..palettes import Palette, decode_colour_mask, read_palette
from .base import SegmentationDataset, Transform, split_name



def _by_stem(directory: Path, suffixes: tuple[str, ...], what: str) -> dict[str, Path]:
    """The files of ``directory`` whose suffix is one of ``suffixes`` in any case
    (``a.PNG`` is a PNG), by stem; two files of one stem are an error."""
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in suffixes and path.is_file():
            if path.stem in files:
                raise DataError(str(path), f"two {what} with the stem {path.stem!r}: {files[path.stem].name}")
            files[path.stem] = path
    return files


class FolderDataset(SegmentationDataset):
    """Users' own data: ``root/images/<split>/*`` (``IMAGE_SUFFIXES``), ``root/masks/<split>/*.png``
    (same stem; suffixes in any case) and ``root/classes.txt`` (one class name per line; optional when
    ``num_classes`` or ``palette`` is given). Masks hold 0..K-1 and 255 = ignore, or, with
    ``palette`` (a known palette's name or a palette file, ``data.palettes``), colours: every
    mask is read as RGB and each colour mapped to its class; an unknown colour is an error
    naming the file and the colour."""

    image_dir, mask_dir, mask_ext = "images", "masks", ".png"
    split_aliases: dict[str, str] = {}

    def __init__(self, root: str | Path, split: str = "train", *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, reduce_zero_label: bool = False,
                 classes: Sequence[str] | None = None, palette: str | Path | None = None,
                 skip_bad: bool = False):
        self.root = Path(root)
        self.split = split_name(split, self.split_aliases)
        self.colour_palette: Palette | None = None if palette is None else read_palette(palette)
        if classes is None and self.colour_palette and not (self.root / "classes.txt").is_file():
            classes = self.colour_palette.classes
        classes = self._classes(classes, num_classes)
        super().__init__(classes, transforms=transforms, num_classes=num_classes,
                         reduce_zero_label=reduce_zero_label, skip_bad=skip_bad, where=str(self.root))
        if self.colour_palette:
            if len(self.colour_palette.classes) != self.num_classes:
                raise DataError(str(palette), f"palette has {len(self.colour_palette.classes)} classes, the "
                                              f"dataset {self.num_classes} ({self.root / 'classes.txt'})")
            self.palette = self.colour_palette.colours
        self.samples = self._pair(self.root / self.image_dir / self.split, self.root / self.mask_dir / self.split)
        self._finish_construction(str(self.root / self.image_dir / self.split))

    @classmethod
    def splits(cls, root: str | Path) -> list[str]:
        """The split folders under ``root/images`` (for ADE20K, ``root`` may be its parent)."""
        images = cls._layout_root(root) / cls.image_dir
        return sorted(p.name for p in images.iterdir() if p.is_dir()) if images.is_dir() else []

    @classmethod
    def mask_folder(cls, root: str | Path, split: str) -> Path:
        """Where the masks of ``split`` are (whether or not the split would load)."""
        return cls._layout_root(root) / cls.mask_dir / split_name(split, cls.split_aliases)

    @classmethod
    def _layout_root(cls, root: str | Path) -> Path:
        root = Path(root)
        if not (root / cls.image_dir).is_dir() and (root / "ADEChallengeData2016").is_dir():
            return root / "ADEChallengeData2016"
        return root

    def _classes(self, classes: Sequence[str] | None, num_classes: int | None) -> Sequence[str]:
        if classes is not None:
            return classes
        path = self.root / "classes.txt"
        if not path.is_file():
            if num_classes is None:
                raise DataError(str(path), "missing (or pass num_classes / classes)")
            return [f"class_{i}" for i in range(num_classes)]
        names = [line.strip() for line in read_text(path).splitlines()]
        while names and not names[-1]:
            names.pop()
        for lineno, name in enumerate(names, 1):
            if not name:
                raise DataError(str(path), f"blank class name at line {lineno}")
        if len(set(names)) != len(names):
            raise DataError(str(path), "duplicate class names")
        if not names:
            raise DataError(str(path), "no class names")
        return names

    def _pair(self, image_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
        if not image_dir.is_dir():
            raise DataError(str(image_dir), f"split directory not found (split {self.split!r})")
        images = _by_stem(image_dir, IMAGE_SUFFIXES, "images")
        masks = _by_stem(mask_dir, (self.mask_ext,), "masks") if mask_dir.is_dir() else {}
        pairs = self._match(images, masks, image_dir, mask_dir, "annotation",
                            lambda image: mask_dir / (image.stem + self.mask_ext),
                            hint=f" (each needs a mask of its stem, {self.mask_ext})")  # fmt: skip
        if self.unpaired_masks:
            warn(f"{mask_dir}: {len(self.unpaired_masks)} mask(s) without an image, ignored "
                 f"(e.g. {Path(self.unpaired_masks[0]).name})")
        return pairs

    def sources(self, ref: tuple[Path, Path]) -> tuple[Path, Path, str, str]:
        return ref[0], ref[1], str(ref[0]), str(ref[1])

    @property
    def stores_labels(self) -> bool:
        return self.colour_palette is None

    def decode_labels(self, source: Path, name: str) -> np.ndarray:
        if self.colour_palette is None:
            return super().decode_labels(source, name)
        return decode_colour_mask(decode_image(source, name), self.colour_palette, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"


class ADE20KDataset(FolderDataset):
    """``ADEChallengeData2016/`` as distributed (``root`` may be it or its parent):
    ``images/{training,validation}/*.jpg`` and ``annotations/.../*.png``; 150 classes,
    reduce-zero-label (0 -> 255, 1..150 -> 0..149). Splits: training/train,
    validation/val. Any dataset in this layout with a ``classes.txt`` beside ``images/``
    (the generated scenes, for one) loads the same way with its own class names."""

    image_dir, mask_dir = "images", "annotations"
    split_aliases = ADE20K_SPLITS

    def __init__(self, root: str | Path, split: str = "training", *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, skip_bad: bool = False):
        root = Path(root)
        if not (root / "images").is_dir() and (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        classes = None if (root / "classes.txt").is_file() else ADE20K_CLASSES
        super().__init__(root, split, transforms=transforms, num_classes=num_classes,
                         reduce_zero_label=True, classes=classes, skip_bad=skip_bad)
