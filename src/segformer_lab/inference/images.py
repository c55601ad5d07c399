"""Images as the model takes them: any supported input (path, PIL image, array, tensor)
as ``uint8 [H, W, 3]`` RGB, the size it runs at, and the normalised tensor."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import IMAGENET_MEAN, IMAGENET_STD, DataError, array_rgb, decode_image, image_rgb, upright_image


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


def input_size(
    height: int, width: int, size: Sequence[int] | None = None, multiple_of: int | None = None, min_side: int = 32
) -> tuple[int, int]:
    """The size an image of ``height`` x ``width`` is given to the model at: ``size`` if
    set, else its own; sides below ``min_side`` scaled up (aspect kept); with
    ``multiple_of``, sides rounded to the nearest multiple (at least one multiple)."""
    if size is not None:
        h, w = int(size[0]), int(size[1])
    else:
        h, w = height, width
        if min(h, w) < min_side:
            factor = min_side / min(h, w)
            h, w = max(min_side, math.ceil(h * factor)), max(min_side, math.ceil(w * factor))
    if multiple_of:
        h = max(multiple_of, round(h / multiple_of) * multiple_of)
        w = max(multiple_of, round(w / multiple_of) * multiple_of)
    if min(h, w) < min_side:
        raise ValueError(f"input size {h}x{w} is too small: the model needs sides >= {min_side}")
    return h, w


def to_pixel_values(rgb: np.ndarray, size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """``uint8 [H, W, 3]`` -> normalised ``float32 [1, 3, *size]`` (bilinear resize,
    antialiased when shrinking)."""
    x = torch.tensor(rgb, device=device).permute(2, 0, 1)[None].float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    if tuple(x.shape[-2:]) != tuple(size):
        shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return x
