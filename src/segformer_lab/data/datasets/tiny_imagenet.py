"""Tiny-ImageNet as a classification dataset (encoder pre-training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import DataError, decode_image, read_text
from .base import BaseDataset, Transform, split_name


class TinyImageNetDataset(BaseDataset):
    """Tiny-ImageNet as classification: ``train/<wnid>/images/*.JPEG``; ``val/images/*.JPEG``
    labelled by ``val/val_annotations.txt`` (file, wnid, bbox... tab-separated); the label
    is the wnid's line index in ``wnids.txt``."""

    def __init__(self, root: str | Path, split: str = "train", *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, skip_bad: bool = False):
        super().__init__(transforms, skip_bad)
        self.root, self.split = Path(root), split_name(split, {"validation": "val", "training": "train"})
        wnids_path = self.root / "wnids.txt"
        if not wnids_path.is_file():
            raise DataError(str(wnids_path), "missing")
        self._set_classes(read_text(wnids_path).split(), num_classes, str(wnids_path))
        index = {wnid: i for i, wnid in enumerate(self.classes)}
        if self.split == "train":
            self.samples = self._train(index)
        elif self.split == "val":
            self.samples = self._val(index)
        else:
            raise DataError(str(self.root), f"unknown split {split!r} (train or val; test has no labels)")
        self._finish_construction(str(self.root / self.split))

    def _train(self, index: dict[str, int]) -> list[tuple[Path, int]]:
        train = self.root / "train"
        if not train.is_dir():
            raise DataError(str(train), "split directory not found")
        for folder in sorted(p for p in train.iterdir() if p.is_dir()):
            if folder.name not in index:
                self._bad(DataError(str(folder), "class directory not listed in wnids.txt"))
        samples = []
        for wnid, label in index.items():
            images = sorted((train / wnid / "images").glob("*.JPEG"))
            if not images:
                self._bad(DataError(str(train / wnid / "images"), f"no images for class {wnid} in wnids.txt"))
            samples.extend((path, label) for path in images)
        return samples

    def _val(self, index: dict[str, int]) -> list[tuple[Path, int]]:
        images_dir, table = self.root / "val" / "images", self.root / "val" / "val_annotations.txt"
        if not table.is_file():
            raise DataError(str(table), "missing")
        labels: dict[str, int] = {}
        for lineno, line in enumerate(read_text(table).splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2 or fields[1].strip() not in index:
                self._bad(DataError(f"{table}:{lineno}", f"bad line {line!r} (file, wnid from wnids.txt expected)"))
                continue
            name = fields[0].strip()
            if name in labels:
                self._bad(DataError(f"{table}:{lineno}", f"{name} annotated twice"))
            labels[name] = index[fields[1].strip()]
        samples = []
        for path in sorted(images_dir.glob("*.JPEG")) if images_dir.is_dir() else []:
            if path.name in labels:
                samples.append((path, labels.pop(path.name)))
            else:
                self._bad(DataError(str(path), f"missing annotation in {table}"))
        for name in labels:
            self._bad(DataError(str(images_dir / name), f"listed in {table} but not found"))
        return samples

    def load(self, ref: tuple[Path, int]) -> dict[str, Any]:
        return {"image": decode_image(ref[0], str(ref[0])), "label": ref[1], "path": str(ref[0])}

    def transform_sample(self, sample: dict[str, Any]) -> dict[str, Any]:
        pixel_values, _ = self.transforms(sample["image"], None)
        return {"pixel_values": pixel_values, "label": sample["label"], "path": sample["path"]}

    def __repr__(self) -> str:
        return f"TinyImageNetDataset(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"
