"""Images as the model takes them: any supported input (PIL image, ``uint8`` array, path)
as ``uint8 [H, W, 3]`` RGB, the size it runs at, and the normalised tensor."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data import IMAGENET_MEAN, IMAGENET_STD, decode_image


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
