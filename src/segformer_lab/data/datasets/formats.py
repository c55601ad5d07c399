"""The format table: a format name -> its dataset class, and ``build_dataset``.

A new format is one module with its dataset class and one entry here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import BaseDataset, Transform
from .cityscapes import CityscapesDataset
from .folder import ADE20KDataset, FolderDataset
from .parquet import ParquetDataset
from .tiny_imagenet import TinyImageNetDataset

DATASETS: dict[str, type[BaseDataset]] = {
    "ade20k": ADE20KDataset,
    "parquet": ParquetDataset,
    "folder": FolderDataset,
    "cityscapes": CityscapesDataset,
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
