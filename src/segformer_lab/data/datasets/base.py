"""The dataset base classes and ``collate``: what every source shares.

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

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from ..io import DataError, check_labels, check_same_size, decode_image, decode_mask, reduce_zero_label, warn
from ..palettes import palette_of_classes
from ..transforms import Pipeline, build_transforms

Transform = Callable[[np.ndarray, "np.ndarray | None"], tuple]
MAX_NAMED = 10  # files named in one error; the rest are counted


def split_name(split: str, aliases: dict[str, str]) -> str:
    """``split`` as the dataset spells it on disk (``aliases``: lower-case name -> on-disk name)."""
    return aliases.get(split.lower(), split)


def _resolve_transforms(transforms: Transform | str | None) -> Transform:
    """A transforms callable from a callable, a pipeline name, or None (convert only)."""
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
        self.palette: tuple[tuple[int, int, int], ...] | None = None  # RGB per class, where known

    def _set_classes(self, classes: Sequence[str], num_classes: int | None, where: str) -> None:
        self.classes = tuple(classes)
        if num_classes is not None and num_classes != len(self.classes):
            raise DataError(where, f"dataset has {len(self.classes)} classes, caller expects "
                                   f"num_classes={num_classes}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        """The class names, index order (what a trained model's ``id2label`` holds)."""
        return list(self.classes)

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
        self.palette = palette_of_classes(self.classes)
        self.reduce_zero_label = reduce_zero_label
        self.unpaired_masks: list[str] = []  # masks without an image (not samples; ``data check`` names them)

    @property
    def stores_labels(self) -> bool:
        """Whether mask files hold the label values themselves (not colours or other codes)."""
        return True

    @classmethod
    def splits(cls, root: Any) -> list[str]:
        """The splits a dataset of this format under ``root`` has (what ``data check`` scans)."""
        return ["train", "validation"]

    def sources(self, ref: Any) -> tuple[Any, Any, str, str]:
        """``(image source, mask source, image name, mask name)``; a source is a path or bytes."""
        raise NotImplementedError

    def _match(self, images: dict[str, Path], masks: dict[str, Path], image_dir: Path, mask_dir: Path,
               what: str, expected: Callable[[Path], Path], hint: str = "") -> list[tuple[Path, Path]]:
        """``(image, mask)`` pairs of the images and masks of one key (a file layout's name
        for a sample). Images without a mask: more than one is an error naming them (``what``
        is missing, ``hint`` says how it is named) unless ``skip_bad``; each is a bad file
        whose mask ``expected(image)`` names. Masks without an image go to ``unpaired_masks``."""
        missing = [image for key, image in images.items() if key not in masks]
        if len(missing) > 1 and not self.skip_bad:
            shown = ", ".join(image.name for image in missing[:MAX_NAMED]) + (
                f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else "")
            raise DataError(str(mask_dir), f"missing {what} for {len(missing)} images of {image_dir}: {shown}{hint}")
        for image in missing:
            self._bad(DataError(str(image), f"missing annotation {expected(image)}"))
        self.unpaired_masks = [str(masks[key]) for key in sorted(set(masks) - set(images))]
        return [(image, masks[key]) for key, image in images.items() if key in masks]

    def decode_labels(self, source: Any, name: str) -> np.ndarray:
        """The file's label values as ``uint8 [H, W]``, before range checks and reduce-zero-label
        (formats whose files hold other codes, colours or Cityscapes ids, convert here)."""
        return decode_mask(source, name)

    def load(self, ref: Any) -> dict[str, Any]:
        image_src, mask_src, path, mask_path = self.sources(ref)
        image = decode_image(image_src, path)
        mask = self.decode_labels(mask_src, mask_path)
        check_same_size(image, mask, mask_path)
        check_labels(mask, self.num_classes, mask_path, reduce_zero=self.reduce_zero_label)
        if self.reduce_zero_label:
            mask = reduce_zero_label(mask)
        return {"image": image, "mask": mask, "path": path}

    def transform_sample(self, sample: dict[str, Any]) -> dict[str, Any]:
        pixel_values, labels = self.transforms(sample["image"], sample["mask"])
        return {"pixel_values": pixel_values, "labels": labels, "path": sample["path"]}


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
