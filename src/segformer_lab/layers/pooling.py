"""Average pooling that exports with dynamic shapes, and PoolFormer's pooling mixer."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layout import to_nchw, to_nhwc


def adaptive_pool_matrix(size: int, grid: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[grid, size]`` averaging matrix of ``AdaptiveAvgPool1d(grid)`` over ``size`` positions.

    Cell ``i`` averages positions ``floor(i * size / grid)`` to ``ceil((i + 1) * size / grid) - 1``,
    PyTorch's bins exactly (cells overlap, or repeat positions when ``grid > size``).
    """
    cells = torch.arange(grid, device=device)[:, None]
    positions = torch.arange(size, device=device)[None, :]
    start = torch.div(cells * size, grid, rounding_mode="floor")
    end = torch.div((cells + 1) * size + grid - 1, grid, rounding_mode="floor")
    inside = ((positions >= start) & (positions < end)).to(dtype)
    return inside / inside.sum(dim=1, keepdim=True)


def adaptive_avg_pool2d(x: torch.Tensor, grid: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, grid)`` for an NCHW ``x``, as one matrix product.

    Same numbers, but the bins are computed from the input's shape inside the graph, so an
    exported model (ONNX, ``torch.export``) stays correct at every input size; the
    built-in op bakes the export-time bins into ONNX graphs. The ``[grid^2, H*W]`` matrix
    is the outer product of the row and column averaging matrices; one ``mm`` over the
    flattened map is faster on CPU than two small products broadcast over ``B x C``.
    """
    b, c, h, w = x.shape
    rows = adaptive_pool_matrix(h, grid, x.device, x.dtype)
    cols = adaptive_pool_matrix(w, grid, x.device, x.dtype)
    cells = (rows[:, None, :, None] * cols[None, :, None, :]).reshape(grid * grid, h * w)
    return F.linear(x.reshape(b * c, h * w), cells).view(b, c, grid, grid)


def ceil_avg_pool2d(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """``F.avg_pool2d(x, kernel, kernel, ceil_mode=True)`` for an NCHW ``x``: windows that
    overhang the border average only their pixels inside.

    Computed as a pool of the zero-padded map, rescaled by each window's pixel count,
    because ``ceil_mode`` makes ``torch.export`` guard on the input size.
    """
    h, w = x.shape[-2:]
    rows, cols = (h + kernel - 1) // kernel, (w + kernel - 1) // kernel
    pooled = F.avg_pool2d(F.pad(x, (0, cols * kernel - w, 0, rows * kernel - h)), kernel, kernel)
    row_pixels = (h - kernel * torch.arange(rows, device=x.device)).clamp(max=kernel)
    col_pixels = (w - kernel * torch.arange(cols, device=x.device)).clamp(max=kernel)
    return pooled * (kernel * kernel / (row_pixels[:, None] * col_pixels[None, :]).to(x.dtype))


class PoolingMixer(nn.Module):
    """PoolFormer's token mixer (Yu et al., CVPR 2022, "MetaFormer Is Actually What You
    Need for Vision"): ``AvgPool(x) - x``, stride 1, padding not counted. Subtracting ``x``
    leaves only the neighbourhood's contribution, since the block adds ``x`` back.
    No parameters. Works on ``[B, H, W, C]`` maps."""

    def __init__(self, pool_size: int = 3) -> None:
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pool_size
        pooled = F.avg_pool2d(to_nchw(x), k, stride=1, padding=k // 2, count_include_pad=False)
        return to_nhwc(pooled) - x

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}"
