"""Any supported image input (PIL image, ``uint8`` array, path) as ``uint8 [H, W, 3]`` RGB.
What happens next (the size it runs at, the resize, the normalisation) is the model's
``Preprocessing`` (``data/preprocessing.py``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from ..data import decode_image


def load_rgb(image: Any, name: str | None = None) -> np.ndarray:
    """A PIL image, ``uint8`` array (``[H, W, 3]``, ``[H, W, 4]`` or ``[H, W]``) or image
    path as ``uint8 [H, W, 3]`` RGB. A file that cannot be decoded raises ``DataError``."""
    if isinstance(image, (str, os.PathLike)):
        return decode_image(str(image), name or str(image))
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image array, got dtype {image.dtype}")
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim == 3 and image.shape[2] in (3, 4):
            return np.ascontiguousarray(image[:, :, :3])
        raise ValueError(f"expected an image array [H, W, 3], got shape {image.shape}")
    raise TypeError(f"expected a PIL image, a uint8 array or a path, got {type(image).__name__}")
