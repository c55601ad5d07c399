"""Calibration images for a static INT8 export: samples of a segmentation dataset, as
its transforms deliver them (the model's validation pipeline), spread evenly over the
split, as float32 ``[1, 3, H, W]`` arrays for ``quantize.CalibrationReader``."""

from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Dataset

DEFAULT_CALIBRATION_IMAGES = 16


def calibration_indices(length: int, count: int) -> list[int]:
    """``min(count, length)`` indices spread evenly over ``range(length)``, first one 0."""
    if length < 1:
        raise ValueError("the calibration split is empty")
    if count < 1:
        raise ValueError(f"--calib-images must be >= 1, got {count}")
    taken = min(count, length)
    return sorted({i * length // taken for i in range(taken)})


def calibration_images(dataset: Dataset, count: int = DEFAULT_CALIBRATION_IMAGES) -> Iterator[np.ndarray]:
    """Up to ``count`` images of ``dataset`` (samples with ``pixel_values`` ``[3, H, W]``),
    evenly spread; samples the dataset leaves out (``skip_bad``: ``None``) are passed over."""
    for index in calibration_indices(len(dataset), count):
        sample = dataset[index]
        if sample is not None:
            yield sample["pixel_values"].unsqueeze(0).float().numpy()
