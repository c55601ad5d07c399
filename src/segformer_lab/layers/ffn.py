"""Feed-forward networks of the encoder blocks."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layout import to_nchw, to_nhwc


class DepthwiseConv(nn.Module):
    """3x3 depthwise convolution applied to a ``[B, H, W, C]`` map (channels-last view)."""

    def __init__(self, channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, kernel_size, 1, kernel_size // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_nhwc(self.dwconv(to_nchw(x)))


class MixFFN(nn.Module):
    """Mix-FFN (Xie et al., 2021, Eq. 3): Linear -> 3x3 depthwise conv -> GELU -> Linear.

    The depthwise convolution leaks enough zero-padding position information that
    SegFormer needs no positional embedding. Works on ``[B, H, W, C]`` maps.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.dense1 = nn.Linear(dim, hidden_dim)
        self.dwconv = DepthwiseConv(hidden_dim)
        self.dense2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense2(F.gelu(self.dwconv(self.dense1(x))))
