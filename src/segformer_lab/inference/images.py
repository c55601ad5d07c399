"""Any supported image input (path, PIL image, array, tensor) as ``uint8 [H, W, 3]`` RGB,
the same pixels whatever its form. What happens next (the size it runs at, the resize,
the normalisation) is the model's ``Preprocessing`` (``data/preprocessing.py``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data import DataError, array_rgb, decode_image, image_rgb, upright_image


def load_rgb(image: Any, name: str | None = None) -> np.ndarray:
    """Any image a user passes as ``uint8 [H, W, 3]`` RGB, the same pixels whatever its form
    (``data.io``'s conventions): a path (decoded, turned upright by its EXIF orientation),
    a PIL image of any mode (turned upright too), an array ``[H, W]``, ``[H, W, 3]`` or
    ``[H, W, 4]`` of ``uint8``, ``uint16`` or float in 0..1, or a torch tensor ``[C, H, W]``
    (channels first, as torchvision's; C = 1, 3 or 4) or ``[H, W]`` of the same dtypes.
    Anything else, or an empty image, raises ``DataError`` naming ``name``."""
    if isinstance(image, (str, os.PathLike)):
        return decode_image(str(image), name or str(image), upright=True)
    name = name or "image"
    if isinstance(image, Image.Image):
        return image_rgb(upright_image(image), name)
    if isinstance(image, torch.Tensor):
        image = _channels_last(image, name)
    if isinstance(image, np.ndarray):
        return array_rgb(image, name)
    raise TypeError(f"expected a path, a PIL image, a numpy array or a torch tensor, got {type(image).__name__}")


def _channels_last(tensor: torch.Tensor, name: str) -> np.ndarray:
    """A ``[C, H, W]`` or ``[H, W]`` tensor as an ``[H, W, C]`` or ``[H, W]`` array."""
    if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
        tensor = tensor.permute(1, 2, 0)
    elif tensor.ndim != 2:
        raise DataError(name, f"expected an image tensor [C, H, W] (C = 1, 3 or 4) or [H, W], got shape "
                              f"{list(tensor.shape)}")
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.float()
    return tensor.detach().cpu().numpy()

