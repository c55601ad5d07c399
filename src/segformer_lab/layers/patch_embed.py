"""Patch embeddings: turn an image or a feature map into the next stage's tokens.

Both take an NCHW tensor (any memory format) and return a ``[B, H', W', C]`` map with
``H' = ceil(H / stride)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layout import to_nhwc


class OverlapPatchEmbed(nn.Module):
    """SegFormer's overlapping patch merging (Xie et al., 2021, Sec. 3.1).

    A strided convolution with kernel ``patch_size`` > ``stride`` and padding
    ``patch_size // 2``, so neighbouring patches overlap; then LayerNorm over channels.
    """

    def __init__(self, in_channels: int, out_channels: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, patch_size, stride, padding=patch_size // 2)
        self.layer_norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.layer_norm(to_nhwc(self.proj(x)))


class PoolPatchEmbed(nn.Module):
    """BoostFormer's pooling patch embedding: average pooling over the same overlapping
    windows (padding not counted), a 1x1 projection, LayerNorm.

    Pooling and the 1x1 projection are both linear and commute, so pooling first costs
    ``C_in`` instead of ``C_out`` channels per window; the projection is a Linear over
    the channels-last map. Parameters: ``C_in * C_out + C_out`` plus the norm, against
    ``k^2`` times that for the strided convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.patch_size, self.stride = patch_size, stride
        self.proj = nn.Linear(in_channels, out_channels)
        self.layer_norm = nn.LayerNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.patch_size
        x = F.avg_pool2d(x, k, self.stride, padding=k // 2, count_include_pad=False)
        return self.layer_norm(self.proj(to_nhwc(x)))


# name -> builder(in_channels, out_channels, patch_size, stride); the one table configs validate against
PATCH_EMBEDS: dict[str, type[nn.Module]] = {"overlap": OverlapPatchEmbed, "pooling": PoolPatchEmbed}


def build_patch_embed(kind: str, in_channels: int, out_channels: int, patch_size: int, stride: int) -> nn.Module:
    if kind not in PATCH_EMBEDS:
        raise ValueError(f"unknown patch embedding {kind!r}; choose one of {tuple(PATCH_EMBEDS)}")
    return PATCH_EMBEDS[kind](in_channels, out_channels, patch_size, stride)
