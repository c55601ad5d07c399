"""Datasets: ADE20K, Hugging Face parquet (``scene_parse_150``), user folders, Tiny-ImageNet.

Every source is a ``BaseDataset``: a list of cheap sample references built and checked
at construction (pairing, empty split, class count), decoded and validated lazily in
``__getitem__`` (corrupt files, sizes, label values). A problem raises ``DataError``
naming the file; with ``skip_bad=True`` the file is left out instead, with one
``DataWarning`` per bad file and a record in ``bad_files``. A bad file found while
loading makes ``__getitem__`` return None, which ``collate`` drops: the sample is left
out, never replaced by another (a duplicate would bias evaluation). In DataLoader
workers those records stay in the worker processes; run ``check_dataset`` first for an
exact count and a clean dataset.

Samples: segmentation ``{"pixel_values": float32 [3, H, W], "labels": int64 [H, W]
(255 = ignore), "path": str}``; classification ``{"pixel_values", "label": int, "path"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import Dataset, default_collate

from .ade20k import ADE20K_CLASSES
from .io import (
    DataError, check_labels, check_same_size, decode_image, decode_mask, reduce_zero_label, warn,
)
from .transforms import Pipeline, build_transforms

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
Transform = Callable[[np.ndarray, "np.ndarray | None"], tuple]


def _split_names(split: str, aliases: dict[str, str]) -> str:
    return aliases.get(split.lower(), split)


def _resolve_transforms(transforms: Transform | str | None) -> Transform:
    if transforms is None:
        return Pipeline()
    if isinstance(transforms, str):
        return build_transforms(transforms)
    return transforms


class BaseDataset(Dataset):
    """Shared bookkeeping: sample references, lazy loading, bad-file handling."""

    def __init__(self, transforms: Transform | str | None, skip_bad: bool):
        self.transforms = _resolve_transforms(transforms)
        self.skip_bad = skip_bad
        self.bad_files: dict[str, str] = {}  # path -> reason, in this process
        self.samples: list[Any] = []
        self.classes: tuple[str, ...] = ()

    def _set_classes(self, classes: Sequence[str], num_classes: int | None, where: str) -> None:
        self.classes = tuple(classes)
        if num_classes is not None and num_classes != len(self.classes):
            raise DataError(where, f"dataset has {len(self.classes)} classes, caller expects "
                                   f"num_classes={num_classes}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    # subclasses: fill ``self.samples`` and implement ``load`` and ``transform_sample``
    def load(self, ref: Any) -> dict[str, Any]:
        """Decode and validate one sample, untransformed; raise ``DataError`` if bad."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.samples)

    def _bad(self, error: DataError) -> None:
        """Raise, or (skip_bad) record and warn once per file."""
        if not self.skip_bad:
            raise error
        if error.path not in self.bad_files:
            self.bad_files[error.path] = error.reason
            warn(f"skipping bad file ({len(self.bad_files)} so far in {type(self).__name__}): {error}")

    def _finish_construction(self, where: str) -> None:
        if not self.samples:
            raise DataError(where, "empty split: no usable samples")
        if self.bad_files:
            warn(f"{type(self).__name__}({where}): {len(self.bad_files)} bad file(s) left out, "
                 f"{len(self.samples)} samples kept")

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any] | None:
        """Sample ``index``; ``(index, seed)`` first reseeds the transforms with ``seed``
        (when they can be reseeded: ``Pipeline.reseed``)."""
        if isinstance(index, tuple):
            index, seed = index
            if hasattr(self.transforms, "reseed"):
                self.transforms.reseed(seed)
        try:
            sample = self.load(self.samples[index])
        except DataError as error:
            self._bad(error)
            return None
        return self.transform_sample(sample)

    def transform_sample(self, sample: dict[str, Any]) -> dict[str, Any]:
        """A ``load``-ed sample through the dataset's transforms (``__getitem__`` after ``load``)."""
        raise NotImplementedError


class SegmentationDataset(BaseDataset):
    """Base of the segmentation sources: subclasses fill ``samples`` and give ``sources``;
    decoding, size and label checks and reduce-zero-label happen here, once."""

    def __init__(self, classes: Sequence[str], *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, reduce_zero_label: bool = False,
                 skip_bad: bool = False, where: str = ""):
        super().__init__(transforms, skip_bad)
        self._set_classes(classes, num_classes, where)
        self.reduce_zero_label = reduce_zero_label

    def sources(self, ref: Any) -> tuple[Any, Any, str, str]:
        """``(image source, mask source, image name, mask name)``; a source is a path or bytes."""
        raise NotImplementedError

    def load(self, ref: Any) -> dict[str, Any]:
        image_src, mask_src, path, mask_path = self.sources(ref)
        image = decode_image(image_src, path)
        mask = decode_mask(mask_src, mask_path)
        check_same_size(image, mask, mask_path)
        if self.reduce_zero_label:
            mask = reduce_zero_label(mask)
        check_labels(mask, self.num_classes, mask_path)
        return {"image": image, "mask": mask, "path": path}

    def transform_sample(self, sample: dict[str, Any]) -> dict[str, Any]:
        pixel_values, labels = self.transforms(sample["image"], sample["mask"])
        return {"pixel_values": pixel_values, "labels": labels, "path": sample["path"]}


class FolderDataset(SegmentationDataset):
    """Users' own data: ``root/images/<split>/*.{jpg,png,...}``, ``root/masks/<split>/*.png``
    (same stem) and ``root/classes.txt`` (one class name per line; optional when
    ``num_classes`` is given). Masks hold 0..K-1 and 255 = ignore."""

    image_dir, mask_dir, mask_ext = "images", "masks", ".png"
    split_aliases: dict[str, str] = {}

    def __init__(self, root: str | Path, split: str = "train", *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, reduce_zero_label: bool = False,
                 classes: Sequence[str] | None = None, skip_bad: bool = False):
        self.root = Path(root)
        self.split = _split_names(split, self.split_aliases)
        classes = self._classes(classes, num_classes)
        super().__init__(classes, transforms=transforms, num_classes=num_classes,
                         reduce_zero_label=reduce_zero_label, skip_bad=skip_bad, where=str(self.root))
        self.samples = self._pair(self.root / self.image_dir / self.split, self.root / self.mask_dir / self.split)
        self._finish_construction(str(self.root / self.image_dir / self.split))

    def _classes(self, classes: Sequence[str] | None, num_classes: int | None) -> Sequence[str]:
        if classes is not None:
            return classes
        path = self.root / "classes.txt"
        if not path.is_file():
            if num_classes is None:
                raise DataError(str(path), "missing (or pass num_classes / classes)")
            return [f"class_{i}" for i in range(num_classes)]
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
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
        images: dict[str, Path] = {}
        for path in sorted(image_dir.iterdir()):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                if path.stem in images:
                    raise DataError(str(path), f"two images with the stem {path.stem!r}")
                images[path.stem] = path
        masks = {p.stem: p for p in mask_dir.glob(f"*{self.mask_ext}")} if mask_dir.is_dir() else {}
        pairs = []
        for stem, image in images.items():
            if stem in masks:
                pairs.append((image, masks[stem]))
            else:
                self._bad(DataError(str(image), f"missing annotation {mask_dir / (stem + self.mask_ext)}"))
        orphans = sorted(set(masks) - set(images))
        if orphans:
            warn(f"{mask_dir}: {len(orphans)} mask(s) without an image, ignored (e.g. {orphans[0]})")
        return pairs

    def sources(self, ref: tuple[Path, Path]) -> tuple[Path, Path, str, str]:
        return ref[0], ref[1], str(ref[0]), str(ref[1])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"


class ADE20KDataset(FolderDataset):
    """``ADEChallengeData2016/`` as distributed (``root`` may be it or its parent):
    ``images/{training,validation}/*.jpg`` and ``annotations/.../*.png``; 150 classes,
    reduce-zero-label (0 -> 255, 1..150 -> 0..149). Splits: training/train,
    validation/val. Any dataset in this layout with a ``classes.txt`` beside ``images/``
    (the generated scenes, for one) loads the same way with its own class names."""

    image_dir, mask_dir = "images", "annotations"
    split_aliases = {"train": "training", "val": "validation"}

    def __init__(self, root: str | Path, split: str = "training", *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, skip_bad: bool = False):
        root = Path(root)
        if not (root / "images").is_dir() and (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        classes = None if (root / "classes.txt").is_file() else ADE20K_CLASSES
        super().__init__(root, split, transforms=transforms, num_classes=num_classes,
                         reduce_zero_label=True, classes=classes, skip_bad=skip_bad)


class ParquetDataset(SegmentationDataset):
    """Hugging Face ``scene_parse_150``-style parquet files already on disk: columns
    ``image`` and ``annotation``, each a struct {bytes, path}. ``root`` is a directory
    searched recursively for the split's files (``train-00000-of-00028.parquet``, or any
    file under a directory named after the split) or a single ``.parquet`` file.
    Only metadata is read up front; samples are decoded on demand, one row group read
    at a time (the last one is cached, so sequential access reads each group once).
    Defaults: ADE20K's 150 classes with reduce-zero-label."""

    split_aliases = {"training": "train", "val": "validation"}

    def __init__(self, root: str | Path, split: str = "train", *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, classes: Sequence[str] = ADE20K_CLASSES,
                 reduce_zero_label: bool = True, image_column: str = "image",
                 annotation_column: str = "annotation", skip_bad: bool = False):
        self.root, self.split = Path(root), _split_names(split, self.split_aliases)
        super().__init__(classes, transforms=transforms, num_classes=num_classes,
                         reduce_zero_label=reduce_zero_label, skip_bad=skip_bad, where=str(self.root))
        self.columns = [image_column, annotation_column]
        self.files = self._find_files()
        self.row_groups = [self._row_groups(path) for path in self.files]  # rows per group, per file
        for file_index, groups in enumerate(self.row_groups):
            self.samples.extend((file_index, group, row) for group, rows in enumerate(groups)
                                for row in range(rows))
        self._cache: tuple[tuple[int, int], pa.Table] | None = None
        self._finish_construction(f"{self.root} (split {self.split!r})")

    def _find_files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        if not self.root.is_dir():
            raise DataError(str(self.root), "not found")
        found = sorted(self.root.rglob("*.parquet"))
        chosen = [p for p in found if p.name.startswith((f"{self.split}-", f"{self.split}_"))
                  or p.stem == self.split or self.split in p.relative_to(self.root).parts[:-1]]
        if not chosen:
            raise DataError(str(self.root), f"empty split: no parquet files for split {self.split!r} "
                                            f"among {[p.name for p in found][:10]}")
        return chosen

    def _row_groups(self, path: Path) -> list[int]:
        """Row counts per row group, from the footer; checks the columns exist."""
        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:
            self._bad(DataError(str(path), f"cannot read parquet ({type(exc).__name__}: {exc})"))
            return []
        names = meta.schema_arrow.names
        for column in self.columns:
            if column not in names:
                self._bad(DataError(str(path), f"column {column!r} missing (columns: {names})"))
                return []
        return [meta.metadata.row_group(i).num_rows for i in range(meta.num_row_groups)]

    def _row(self, ref: tuple[int, int, int]) -> tuple[dict | None, dict | None]:
        file_index, group, row = ref
        if self._cache is None or self._cache[0] != (file_index, group):
            path = self.files[file_index]
            try:
                table = pq.ParquetFile(path).read_row_group(group, columns=self.columns)
            except Exception as exc:
                raise DataError(str(path), f"cannot read row group {group} "
                                           f"({type(exc).__name__}: {exc})") from exc
            self._cache = ((file_index, group), table)
        table = self._cache[1]
        return table.column(self.columns[0])[row].as_py(), table.column(self.columns[1])[row].as_py()

    def sources(self, ref: tuple[int, int, int]) -> tuple[bytes, bytes, str, str]:
        file_index, group, row = ref
        row_index = sum(self.row_groups[file_index][:group]) + row
        path = f"{self.files[file_index]}[row {row_index}]"
        image, annotation = self._row(ref)
        if image and image.get("path"):
            path += f" ({image['path']})"
        if not image or not image.get("bytes"):
            raise DataError(path, f"no image bytes in column {self.columns[0]!r}")
        if not annotation or not annotation.get("bytes"):
            raise DataError(path, f"missing annotation (column {self.columns[1]!r} is empty)")
        return image["bytes"], annotation["bytes"], path, f"{path} annotation"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None  # workers read their own row groups
        return state

    def __repr__(self) -> str:
        return f"ParquetDataset(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"


class TinyImageNetDataset(BaseDataset):
    """Tiny-ImageNet as classification: ``train/<wnid>/images/*.JPEG``; ``val/images/*.JPEG``
    labelled by ``val/val_annotations.txt`` (file, wnid, bbox... tab-separated); the label
    is the wnid's line index in ``wnids.txt``."""

    def __init__(self, root: str | Path, split: str = "train", *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, skip_bad: bool = False):
        super().__init__(transforms, skip_bad)
        self.root, self.split = Path(root), _split_names(split, {"validation": "val", "training": "train"})
        wnids_path = self.root / "wnids.txt"
        if not wnids_path.is_file():
            raise DataError(str(wnids_path), "missing")
        self._set_classes(wnids_path.read_text().split(), num_classes, str(wnids_path))
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
        for lineno, line in enumerate(table.read_text().splitlines(), 1):
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


DATASETS: dict[str, type[BaseDataset]] = {
    "ade20k": ADE20KDataset,
    "parquet": ParquetDataset,
    "folder": FolderDataset,
    "tiny_imagenet": TinyImageNetDataset,
}


def build_dataset(format: str, root: str | Path, split: str, transforms: Transform | str | None = None,
                  num_classes: int | None = None, skip_bad: bool = False, **kwargs: Any) -> BaseDataset:
    """One entry point: ``format`` in ``DATASETS``; ``transforms`` a ``Pipeline``, any
    ``(image, mask) -> (pixel_values, labels)`` callable, or a pipeline name; extra
    ``kwargs`` go to the dataset class (e.g. ``reduce_zero_label`` for folders)."""
    try:
        cls = DATASETS[format]
    except KeyError:
        raise ValueError(f"unknown dataset format {format!r}; choose from {sorted(DATASETS)}") from None
    return cls(root, split, transforms=transforms, num_classes=num_classes, skip_bad=skip_bad, **kwargs)


@dataclass
class DataReport:
    """What ``check_dataset`` found: samples scanned, good ones, ``{path: reason}`` of bad
    files (a file can spoil several samples, e.g. a parquet file)."""

    total: int
    ok: int = 0
    bad: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.ok}/{self.total} samples ok, {len(self.bad)} bad file(s)"]
        lines += [f"  {path}: {reason}" for path, reason in list(self.bad.items())[:20]]
        if len(self.bad) > 20:
            lines.append(f"  ... and {len(self.bad) - 20} more")
        return "\n".join(lines)


def check_dataset(dataset: BaseDataset, *, raise_errors: bool | None = None) -> DataReport:
    """Decode and validate every sample (no transforms). With ``skip_bad`` the bad samples
    are removed from ``dataset`` (so DataLoader workers never meet them) and a summary
    warning is given; otherwise a ``DataError`` lists them (``raise_errors=False``: just
    return the report)."""
    raise_errors = not dataset.skip_bad if raise_errors is None else raise_errors
    report, keep = DataReport(total=len(dataset)), []
    for ref in dataset.samples:
        try:
            dataset.load(ref)
            keep.append(ref)
        except DataError as error:
            report.bad[error.path] = error.reason
    report.ok = len(keep)
    if report.bad and raise_errors:
        first = next(iter(report.bad))
        raise DataError(first, f"{report.bad[first]}\n{report}")
    if dataset.skip_bad and report.bad:
        if not keep:
            raise DataError(repr(dataset), f"empty split: every sample is bad\n{report}")
        dataset.samples = keep
        dataset.bad_files.update(report.bad)
        warn(f"{dataset!r}: {report.total - report.ok} bad sample(s) removed, {report.ok} kept")
    return report


def collate(batch: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Batch samples, dropping None (bad samples left out); None if none remain.

    Segmentation: each tensor key is stacked when all shapes agree, else kept as a list
    (validation images differ in size, and labels stay at their original sizes; padding
    would change what the model sees and what is scored). Classification samples use
    torch's default collate."""
    batch = [sample for sample in batch if sample is not None]
    if not batch:
        return None
    if "labels" not in batch[0]:
        return default_collate(batch)
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        same = all(torch.is_tensor(v) and v.shape == values[0].shape for v in values)
        out[key] = torch.stack(values) if same else values
    return out
