"""Cross-covariance attention (XCA) token mixer."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .attention import AttentionOutput


class CrossCovarianceAttention(nn.Module):
    """Cross-covariance attention from XCiT (El-Nouby et al., NeurIPS 2021).

    Attention runs across channels instead of tokens: per head, queries and keys are
    seen as ``head_dim x N`` matrices, L2-normalised along the token axis, and the
    ``head_dim x head_dim`` map ``softmax(tau * Q_hat @ K_hat^T)`` mixes the channels of
    the values. Every token is used (no sequence reduction) and the cost is linear in
    the number of tokens ``N``.

    ``temperature`` (``tau``, one per head, initialised to 1) has shape ``[num_heads]``
    so that, like biases and norm weights (``ndim <= 1``), it is left out of weight
    decay. Input and output are channels-last ``[B, H, W, C]``; pre-norm and residual
    belong to the surrounding block. With ``output_projection`` the heads are followed
    by ``output`` (an ``AttentionOutput``); without it there is no projection at all.
    """

    def __init__(self, dim: int, num_heads: int, output_projection: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.eps = eps
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.temperature = nn.Parameter(torch.ones(num_heads))
        self.output = AttentionOutput(dim) if output_projection else None

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, H, W, C]`` -> three ``[B, heads, head_dim, N]`` tensors (queries, keys, values)."""
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 4, 1).unbind(0)
        return q, k, v

    def channel_attention(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The ``[B, heads, head_dim, head_dim]`` softmax map; each row sums to 1."""
        q = F.normalize(q, dim=-1, eps=self.eps)
        k = F.normalize(k, dim=-1, eps=self.eps)
        logits = (q @ k.transpose(-2, -1)) * self.temperature.view(-1, 1, 1)
        return logits.softmax(dim=-1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The channel attention map for a ``[B, H, W, C]`` input (for inspection and tests)."""
        q, k, _ = self.qkv_heads(x)
        return self.channel_attention(q, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        q, k, v = self.qkv_heads(x)
        out = self.channel_attention(q, k) @ v  # [B, heads, head_dim, N]
        out = out.permute(0, 3, 1, 2).reshape(b, h, w, c)
        if self.output is not None:
            out = self.output(out)
        return out
