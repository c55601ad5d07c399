"""Class scores at the label size: whole image or sliding window, with optional
multi-scale and flip test-time augmentation.

The model returns logits at stride 4; they are upsampled (bilinear,
``align_corners=False``) once to the size that is scored. A sliding window puts each
window's logits, upsampled to the window, into a canvas the size of the (scaled) input
and averages where windows overlap (as mmseg); that canvas is resized to ``out_size``
only when the input is not already at that size. An image no larger than the crop is
one window: exactly whole-image inference. Several views (scales, flip) are
combined by averaging softmax probabilities.

``MODES`` names the inference modes; the engine's validation, ``eval`` and ``predict``
all take theirs from here.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("whole", "slide")


def upsample(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``[B, K, h, w]`` to ``size``; a no-op if already that size."""
    size = tuple(size)
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def window_starts(length: int, crop: int, stride: int) -> list[int]:
    """Start offsets of windows of ``crop`` every ``stride`` covering ``length``, the last
    one flush with the end (mmseg's grid); one window when ``crop >= length``."""
    if crop >= length:
        return [0]
    count = math.ceil((length - crop) / stride) + 1
    return [min(i * stride, length - crop) for i in range(count)]


def slide_logits(model: nn.Module, pixel_values: torch.Tensor, crop: int | Sequence[int],
                 stride: int | Sequence[int]) -> torch.Tensor:
    """Logits at the input size from overlapping ``crop`` windows, averaged. Windows are
    clipped to the image; when one window covers it, this is whole-image inference and
    the model's stride-4 logits come back as they are (nothing resized)."""
    crop_h, crop_w = (crop, crop) if isinstance(crop, int) else crop
    stride_h, stride_w = (stride, stride) if isinstance(stride, int) else stride
    if min(stride_h, stride_w) < 1 or stride_h > crop_h or stride_w > crop_w:
        raise ValueError(f"need 1 <= stride <= crop, got stride {stride} for crop {crop}")
    height, width = pixel_values.shape[-2:]
    tops, lefts = window_starts(height, crop_h, stride_h), window_starts(width, crop_w, stride_w)
    if len(tops) == len(lefts) == 1:
        return model(pixel_values)
    total = count = None
    for top in tops:
        for left in lefts:
            window = pixel_values[..., top:top + crop_h, left:left + crop_w]
            logits = upsample(model(window), window.shape[-2:])
            if total is None:
                total = logits.new_zeros(*logits.shape[:2], height, width)
                count = logits.new_zeros(1, 1, height, width)
            total[..., top:top + crop_h, left:left + crop_w] += logits
            count[..., top:top + crop_h, left:left + crop_w] += 1
    return total / count


def predict_logits(model: nn.Module, pixel_values: torch.Tensor, out_size: Sequence[int], mode: str = "whole",
                   crop: int | Sequence[int] = 512, stride: int | Sequence[int] = 341,
                   scales: Sequence[float] = (1.0,), flip: bool = False) -> torch.Tensor:
    """Class scores ``[B, K, *out_size]`` for ``pixel_values [B, 3, H, W]``.

    With one view (a single scale, no flip) the result is the model's logits, upsampled;
    with several it is the log of the views' mean softmax probabilities, so in both
    cases ``softmax`` of the result gives probabilities and ``argmax`` the prediction.
    ``scales`` resize the input (bilinear) before the model; ``flip`` adds the
    horizontally flipped input of each scale.
    """
    if mode not in MODES:
        raise ValueError(f"unknown inference mode {mode!r}; choose one of {MODES}")
    if not scales:
        raise ValueError("need at least one scale")
    out_size = tuple(int(s) for s in out_size)
    views = [(scale, flipped) for scale in scales for flipped in ((False, True) if flip else (False,))]
    probabilities = None
    for scale, flipped in views:
        x = pixel_values
        if scale != 1.0:
            size = [max(1, round(side * scale)) for side in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if flipped:
            x = x.flip(-1)
        logits = upsample(model(x) if mode == "whole" else slide_logits(model, x, crop, stride), out_size)
        if flipped:
            logits = logits.flip(-1)
        if len(views) == 1:
            return logits
        p = logits.float().softmax(1)
        probabilities = p if probabilities is None else probabilities + p
    return (probabilities / len(views)).log()
