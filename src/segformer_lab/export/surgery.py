"""Changes made to a copy of the model before export: LayerNorm written out for opsets
without ``LayerNormalization``, and float16 compute behind float32 inputs and outputs."""

from __future__ import annotations

import torch
from torch import nn


class DecomposedLayerNorm(nn.Module):
    """``nn.LayerNorm`` as mean, variance and rsqrt, for ONNX opsets without
    ``LayerNormalization``. Shares the original's parameters (same state dict keys);
    statistics are computed in at least float32 (so an fp16 export stays stable)."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.normalized_shape = tuple(norm.normalized_shape)
        self.eps = norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-len(self.normalized_shape), 0))
        compute = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(compute)
        centred = xf - xf.mean(dims, keepdim=True)
        variance = (centred * centred).mean(dims, keepdim=True)
        y = (centred / torch.sqrt(variance + self.eps)).to(x.dtype)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


def decompose_layer_norms(model: nn.Module) -> int:
    """Replace every ``nn.LayerNorm`` in ``model`` (in place) by ``DecomposedLayerNorm``;
    returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, name, DecomposedLayerNorm(child))
                replaced += 1
    return replaced


class HalfPrecision(nn.Module):
    """The model in float16 behind float32 inputs and outputs (casts at both ends), so
    callers of the exported graph feed and read float32 as with a float32 export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values.half()).float()
