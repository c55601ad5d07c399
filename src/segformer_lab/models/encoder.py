"""The Mix Transformer (MiT) encoder of SegFormer (Xie et al., NeurIPS 2021).

Reads top-down: ``SegformerBlock`` (pre-norm attention + Mix-FFN) -> ``MixTransformerEncoder``
(four stages of patch embedding, blocks, LayerNorm). Parameter names follow Hugging Face's
``SegformerModel`` (``encoder.block.N.M.attention.self.query`` ...).
"""

from __future__ import annotations

import torch
from torch import nn

import math

from ..layers import DropPath, EfficientAttention, MixFFN, OverlapPatchEmbed, build_rope, to_nchw
from .config import ModelConfig, RopeConfig, StageConfig


class SegformerBlock(nn.Module):
    """``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MixFFN(LN(x)))``, on ``[B, H, W, C]``."""

    def __init__(
        self, stage: StageConfig, drop_path: float, rope: RopeConfig, reference_grid: tuple[int, int] | None
    ) -> None:
        super().__init__()
        self.layer_norm_1 = nn.LayerNorm(stage.width)
        rotary = build_rope(
            stage.pos_encoding,
            head_dim=stage.width // stage.num_heads,
            num_heads=stage.num_heads,
            theta=rope.theta,
            key_positions=rope.key_positions,
            reference_grid=reference_grid,
        )
        self.attention = EfficientAttention(stage.width, stage.num_heads, stage.sr_ratio, rotary)
        self.drop_path = DropPath(drop_path)
        self.layer_norm_2 = nn.LayerNorm(stage.width)
        self.mlp = MixFFN(stage.width, int(stage.width * stage.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attention(self.layer_norm_1(x)))
        return x + self.drop_path(self.mlp(self.layer_norm_2(x)))


class MixTransformerEncoder(nn.Module):
    """Hierarchical encoder: returns one feature map per stage, ``[B, C_i, H_i, W_i]``.

    With the standard strides the maps are at 1/4, 1/8, 1/16 and 1/32 of the input
    (rounded up). The maps are channels-last in memory; their shapes are NCHW.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        in_channels = [config.in_channels, *config.widths[:-1]]
        self.patch_embeddings = nn.ModuleList(
            OverlapPatchEmbed(c_in, s.width, s.patch_size, s.stride) for c_in, s in zip(in_channels, config.stages)
        )
        self.block = nn.ModuleList()
        start, stride = 0, 1
        for stage in config.stages:
            stride *= stage.stride
            grid = reference_grid(config.rope.reference_size, stride)
            self.block.append(
                nn.ModuleList(SegformerBlock(stage, rates[start + j], config.rope, grid) for j in range(stage.depth))
            )
            start += stage.depth
        self.layer_norm = nn.ModuleList(nn.LayerNorm(s.width) for s in config.stages)

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = pixel_values
        for embed, blocks, norm in zip(self.patch_embeddings, self.block, self.layer_norm):
            x = embed(x)
            for block in blocks:
                x = block(x)
            x = to_nchw(norm(x))
            features.append(x)
        return features


def reference_grid(reference_size: tuple[int, int] | None, stride: int) -> tuple[int, int] | None:
    """The grid a stage of total ``stride`` has at the RoPE reference input size."""
    if reference_size is None:
        return None
    return (math.ceil(reference_size[0] / stride), math.ceil(reference_size[1] / stride))
