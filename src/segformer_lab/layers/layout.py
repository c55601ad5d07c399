"""Free conversions between the two layouts the encoder uses.

Inside the encoder a feature map is kept as a channels-last tensor ``[B, H, W, C]``:
LayerNorm and Linear act on the last dimension directly, and the same memory seen
through ``permute(0, 3, 1, 2)`` is an NCHW tensor in ``torch.channels_last`` memory
format, which convolutions and bilinear resizing accept without a copy. Both helpers
below return views; nothing is copied.
"""

from __future__ import annotations

import torch


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, W, C]`` -> ``[B, C, H, W]`` (a channels-last view)."""
    return x.permute(0, 3, 1, 2)


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H, W, C]`` (contiguous if ``x`` is channels-last)."""
    return x.permute(0, 2, 3, 1)
