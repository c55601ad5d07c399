"""Learnable image resizer (Talebi & Milanfar, ICCV 2021, "Learning to Resize Images for
Computer Vision Tasks")."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ResizerResidualBlock(nn.Module):
    """Conv3x3 -> BN -> LeakyReLU(0.2) -> Conv3x3 -> BN, added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # Each convolution feeds a BatchNorm, which would cancel a bias.
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        return x + self.norm2(self.conv2(y))


class LearnableResizer(nn.Module):
    """A CNN resizer trained jointly with the task model (Talebi & Milanfar, 2021, Fig. 2).

    ``forward(x, size)`` maps ``[B, channels, H, W]`` to ``[B, channels, h, w]``, up or
    down, for any sizes. A bilinear resize of the image is the skip path; the learnt path
    extracts ``hidden`` features at the input resolution (Conv7x7, Conv1x1, BN), resizes
    them bilinearly, refines them with ``num_residual`` residual blocks and a Conv3x3 + BN
    (with a skip from the resized features), and a final Conv7x7 adds a correction in
    image space.

    The final Conv7x7 starts at zero, so a fresh resizer is exactly bilinear resizing:
    inserted in front of a pretrained model it changes nothing until training moves it.
    """

    def __init__(self, channels: int = 3, hidden: int = 16, num_residual: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(channels, hidden, 7, padding=3),
            nn.LeakyReLU(0.2),
            nn.Conv2d(hidden, hidden, 1),
            nn.LeakyReLU(0.2),
            nn.BatchNorm2d(hidden),
        )
        self.blocks = nn.Sequential(*(ResizerResidualBlock(hidden) for _ in range(num_residual)))
        self.fuse = nn.Sequential(nn.Conv2d(hidden, hidden, 3, padding=1, bias=False), nn.BatchNorm2d(hidden))
        self.head = nn.Conv2d(hidden, channels, 7, padding=3)
        self.reset_to_identity()

    def reset_to_identity(self) -> None:
        """Zero the final Conv7x7, so that the resizer is exactly bilinear resizing.

        A fresh resizer must change nothing about a pretrained model it is put in front
        of (or, in a decoder, about the plain bilinear upsampling it replaces) until
        training moves it. A model calls this after its generic weight init, which would
        otherwise overwrite the zeros with random weights.
        """
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        size = tuple(size)
        f = _bilinear(self.stem(x), size)
        return _bilinear(x, size) + self.head(f + self.fuse(self.blocks(f)))
