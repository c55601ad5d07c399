"""Attention token mixers."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layout import to_nchw, to_nhwc
from .rope import RotaryEmbedding2d


class EfficientSelfAttention(nn.Module):
    """Efficient self-attention with sequence reduction (PVT, Wang et al., 2021; SegFormer).

    Queries come from every token of the ``[B, H, W, C]`` map; keys and values from the
    map reduced by a ``sr_ratio``-strided ``sr_ratio``x``sr_ratio`` convolution and a
    LayerNorm, so the cost is ``N * N / sr_ratio**2`` instead of ``N**2``. With
    ``sr_ratio == 1`` it is plain multi-head self-attention. The heads are computed by
    ``scaled_dot_product_attention``; the output projection lives in ``AttentionOutput``.

    With a ``rope`` module, queries and keys are rotated by their grid positions; a key
    of the reduced map sits on the ``sr_ratio`` x ``sr_ratio`` window it summarises (see
    ``layers.rope``).
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, rope: RotaryEmbedding2d | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.layer_norm = nn.LayerNorm(dim)
        self.rope = rope

    def window_average(self, t: torch.Tensor) -> torch.Tensor:
        """Average a ``[N, C, H, W]`` map over the windows the reduction merges into one key."""
        return F.avg_pool2d(t, self.sr_ratio, self.sr_ratio)

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The key/value source: ``x`` itself, or its ``sr_ratio``-reduced map."""
        if self.sr_ratio == 1:
            return x
        return self.layer_norm(to_nhwc(self.sr(to_nchw(x))))

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` -> ``[B, heads, H*W, head_dim]`` (a view)."""
        b, h, w, _ = x.shape
        return x.view(b, h * w, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        kv = self.reduce(x)
        q = self.split_heads(self.query(x))
        k = self.split_heads(self.key(kv))
        v = self.split_heads(self.value(kv))
        if self.rope is not None:
            q, k = self.rope(q, k, (h, w), self.window_average if self.sr_ratio > 1 else None)
        out = F.scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(b, h, w, c)


class AttentionOutput(nn.Module):
    """The output projection after the heads are concatenated."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(x)


class EfficientAttention(nn.Module):
    """Efficient self-attention followed by its output projection.

    The two submodules are named ``self`` and ``output`` so that parameter names match
    Hugging Face's SegFormer (``attention.self.query``, ``attention.output.dense``).
    """

    def __init__(self, dim: int, num_heads: int, sr_ratio: int, rope: RotaryEmbedding2d | None = None) -> None:
        super().__init__()
        self.self = EfficientSelfAttention(dim, num_heads, sr_ratio, rope)
        self.output = AttentionOutput(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x))
