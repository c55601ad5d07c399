"""Datasets, one module per format: ``folder`` (users' folders and ADE20K), ``cityscapes``, ``parquet``
(Hugging Face ``scene_parse_150`` files), ``tiny_imagenet`` (classification); ``base``
holds what they share (the sample contract, bad-file handling, ``collate``), ``formats``
the format table and ``build_dataset``, ``checks`` ``check_dataset``.
"""

from .base import BaseDataset, SegmentationDataset, collate
from .cityscapes import CityscapesDataset
from .checks import DataReport, check_dataset
from .folder import ADE20KDataset, FolderDataset
from .formats import DATASETS, build_dataset
from .parquet import ParquetDataset
from .tiny_imagenet import TinyImageNetDataset

__all__ = [
    "DATASETS", "ADE20KDataset", "BaseDataset", "CityscapesDataset", "DataReport", "FolderDataset", "ParquetDataset",
    "SegmentationDataset", "TinyImageNetDataset", "build_dataset", "check_dataset", "collate",
]
