"""The hierarchical encoder: SegFormer's Mix Transformer (MiT; Xie et al., NeurIPS 2021)
and every block the BoostFormer ablation study composes from it.

Reads top-down: ``build_mixer`` (a config's token mixer) -> ``EncoderBlock`` (mixer + FFN,
pre- or post-norm) -> ``HierarchicalEncoder`` (stages of patch embedding, blocks, final
norm). With the default ``StageConfig`` a block is SegFormer's and parameter names follow
Hugging Face's ``SegformerModel`` (``encoder.block.N.M.attention.self.query`` ...).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..layers import DropPath, LayerScale, build_ffn, build_norm, build_patch_embed, build_rope, to_nchw
from ..layers.mixers import build_token_mixer
from .config import ModelConfig, RopeConfig, StageConfig


def build_mixer(
    stage: StageConfig, block: int, rope: RopeConfig, reference_grid: tuple[int, int] | None
) -> nn.Module:
    """The token mixer of block ``block`` of ``stage``: ``[B, H, W, C] -> [B, H, W, C]``."""
    dim, heads, kind = stage.width, stage.num_heads, stage.mixer_of_block(block)
    rotary = build_rope(
        stage.pos_encoding,
        head_dim=dim // heads,
        num_heads=heads,
        theta=rope.theta,
        key_positions=rope.key_positions,
        reference_grid=reference_grid,
    )
    return build_token_mixer(
        kind,
        dim,
        heads,
        sr_ratio=stage.sr_ratio,
        kv_pooling=stage.kv_pooling,
        kv_grid=stage.kv_grid,
        expansion=stage.mixer_expansion,
        act=stage.act,
        output_projection=stage.output_projection,
        rope=rotary,
    )


class EncoderBlock(nn.Module):
    """A mixer and an FFN on ``[B, H, W, C]`` maps, each as a residual branch.

    ``pre`` norm (SegFormer): ``x + DP(mix(N1(x)))``, then ``+ DP(FFN(N2(.)))``.
    ``post`` norm (PoolFormer / BoostFormer): ``x1 = x + DP(mix(x))``,
    ``out = N2(x1 + DP(FFN(N1(x1))))``. Layer scale multiplies each branch before drop
    path; a local connection adds the block's input once more before the final norm.
    """

    def __init__(self, stage: StageConfig, mixer: nn.Module, drop_path: float) -> None:
        super().__init__()
        dim = stage.width
        self.pre_norm = stage.norm_placement == "pre"
        self.local_connection = stage.local_connection
        self.layer_norm_1 = build_norm(stage.norm, dim)
        self.attention = mixer
        self.drop_path = DropPath(drop_path)
        self.layer_norm_2 = build_norm(stage.norm, dim)
        self.mlp = build_ffn(stage.ffn, dim, int(dim * stage.mlp_ratio), stage.act, stage.ffn_norm, stage.fold)
        scaled = stage.layer_scale is not None
        self.layer_scale_1 = LayerScale(dim, stage.layer_scale) if scaled else nn.Identity()
        self.layer_scale_2 = LayerScale(dim, stage.layer_scale) if scaled else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.pre_norm:
            x = x + self.drop_path(self.layer_scale_1(self.attention(self.layer_norm_1(x))))
            x = x + self.drop_path(self.layer_scale_2(self.mlp(self.layer_norm_2(x))))
            return x + shortcut if self.local_connection else x
        x = x + self.drop_path(self.layer_scale_1(self.attention(x)))
        x = x + self.drop_path(self.layer_scale_2(self.mlp(self.layer_norm_1(x))))
        return self.layer_norm_2(x + shortcut if self.local_connection else x)


class HierarchicalEncoder(nn.Module):
    """Stages of patch embedding and blocks; returns one map per stage, ``[B, C_i, H_i, W_i]``.

    With the standard strides the maps are at 1/4, 1/8, 1/16 and 1/32 of the input
    (rounded up). The maps are channels-last in memory; their shapes are NCHW.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        in_channels = [config.in_channels, *config.widths[:-1]]
        self.patch_embeddings = nn.ModuleList(
            build_patch_embed(s.patch_embed, c_in, s.width, s.patch_size, s.stride)
            for c_in, s in zip(in_channels, config.stages)
        )
        self.block = nn.ModuleList()
        start, stride = 0, 1
        for stage in config.stages:
            stride *= stage.stride
            grid = reference_grid(config.rope.reference_size, stride)
            blocks = [
                EncoderBlock(stage, build_mixer(stage, j, config.rope, grid), rates[start + j])
                for j in range(stage.depth)
            ]
            self.block.append(nn.ModuleList(blocks))
            start += stage.depth
        self.layer_norm = nn.ModuleList(nn.LayerNorm(s.width) if s.final_norm else nn.Identity() for s in config.stages)
        self.stage_shortcut = [s.local_connection for s in config.stages]

    def forward(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        features = []
        x = pixel_values
        for embed, blocks, norm, shortcut in zip(self.patch_embeddings, self.block, self.layer_norm, self.stage_shortcut):
            x = embed(x)
            embedded = x
            for block in blocks:
                x = block(x)
            if shortcut:
                x = x + embedded
            x = to_nchw(norm(x))
            features.append(x)
        return features


def reference_grid(reference_size: tuple[int, int] | None, stride: int) -> tuple[int, int] | None:
    """The grid a stage of total ``stride`` has at the RoPE reference input size."""
    if reference_size is None:
        return None
    return (math.ceil(reference_size[0] / stride), math.ceil(reference_size[1] / stride))
