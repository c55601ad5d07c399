"""Patch embeddings: turn an image or a feature map into the next stage's tokens."""

from __future__ import annotations

import torch
from torch import nn

from .layout import to_nhwc


class OverlapPatchEmbed(nn.Module):
    """SegFormer's overlapping patch merging (Xie et al., 2021, Sec. 3.1).

    A strided convolution with kernel ``patch_size`` > ``stride`` and padding
    ``patch_size // 2``, so neighbouring patches overlap and a side of length ``n``
    becomes ``ceil(n / stride)``; then LayerNorm over channels.

    Input is an NCHW tensor (any memory format); output is ``[B, H', W', C]``.
    """

    def __init__(self, in_channels: int, out_channels: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, patch_size, stride, padding=patch_size // 2)
        self.layer_norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.layer_norm(to_nhwc(self.proj(x)))
