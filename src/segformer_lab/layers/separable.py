"""Separable self-attention token mixer (MobileViTv2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .attention import AttentionOutput
from .layout import to_nchw, to_nhwc


class SeparableSelfAttention(nn.Module):
    """Separable self-attention from MobileViTv2 (Mehta & Rastegari, 2022).

    A single linear map scores every token; the scores, softmax-normalised over the
    tokens, weight the keys into one context vector ``c = sum_n s_n K_n`` per sample,
    which then gates the ReLU'd values of every token: ``out_n = ReLU(V_n) * c``. Cost
    and memory are linear in the number of tokens.

    With ``sr_ratio > 1`` the scores and keys come from the map reduced as in SegFormer's
    efficient attention (an ``sr_ratio``-strided convolution and a LayerNorm; sides that
    do not divide are floored, as the convolution does), the values from every token.

    ``num_heads`` is accepted so that all mixers share one constructor and is ignored:
    the operator has a single context vector. The score projection has no bias, since
    the softmax over tokens cancels any constant. Input and output are channels-last
    ``[B, H, W, C]``; pre-norm and residual belong to the surrounding block. With
    ``output_projection`` the result goes through ``output`` (an ``AttentionOutput``).
    """

    def __init__(self, dim: int, num_heads: int = 1, sr_ratio: int = 1, output_projection: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads  # kept for interface uniformity; unused
        self.score = nn.Linear(dim, 1, bias=False)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.layer_norm = nn.LayerNorm(dim)
        self.output = AttentionOutput(dim) if output_projection else None

    def reduce(self, x: torch.Tensor) -> torch.Tensor:
        """The score/key source: ``x`` itself, or its ``sr_ratio``-reduced map."""
        if self.sr_ratio == 1:
            return x
        return self.layer_norm(to_nhwc(self.sr(to_nchw(x))))

    def _scores(self, kv: torch.Tensor) -> torch.Tensor:
        """Softmax over the tokens of the ``[B, h, w, C]`` source -> ``[B, h*w]``."""
        return self.score(kv).reshape(kv.shape[0], -1).softmax(dim=-1)

    def context_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The ``[B, N']`` context scores of a ``[B, H, W, C]`` input (``N'`` reduced tokens).

        Each row is non-negative and sums to 1: the context vector is a convex
        combination of the keys.
        """
        return self._scores(self.reduce(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _, c = x.shape
        kv = self.reduce(x)
        scores = self._scores(kv)  # [B, N']
        keys = self.key(kv).reshape(b, -1, c)  # [B, N', C]
        context = (scores.unsqueeze(1) @ keys).view(b, 1, 1, c)  # [B, 1, 1, C]
        out = F.relu(self.value(x)) * context
        if self.output is not None:
            out = self.output(out)
        return out
