"""The segmentation model: encoder + decode head; and what it shares with the image
classifier (input checks, initialisation, the parameters exempt from weight decay)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import LearnableResizer, RotaryEmbedding2d
from .config import ModelConfig
from .encoder import HierarchicalEncoder
from .heads import HEADS
from .hub import write_model_card
from .pretrained import PretrainedMixin


def build_head(config: ModelConfig) -> nn.Module:
    """The decode head ``config.decoder`` describes, over the encoder's stage widths."""
    d = config.decoder
    return HEADS[d.type](
        config.widths,
        config.num_classes,
        width=d.width,
        dropout=d.dropout,
        dropout_mode=d.dropout_mode,
        act=d.act,
        fold=d.fold,
        resizer=d.resizer,
    )


class SegmentationModel(PretrainedMixin, nn.Module):
    """``model(pixel_values[B, 3, H, W]) -> logits[B, K, ceil(H/4), ceil(W/4)]``.

    Logits stay at stride 4: upsampling to the label or image size is the caller's one
    resize (the engine, ``predict``). ``model.encoder`` alone returns the stage maps.
    With ``config.input_resizer`` a learnable resizer first brings every image to that
    size, and the logits are resized back to the stride-4 grid of the input.
    """

    min_size = 32

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.input_resizer = LearnableResizer(config.in_channels) if config.input_resizer else None
        self.encoder = HierarchicalEncoder(config)
        self.decode_head = build_head(config)
        initialise(self)
        # mmseg's decode heads start the classifier at N(0, 0.01): near-uniform initial
        # predictions (the He init of a K-channel 1x1 conv gives logits of scale ~10).
        nn.init.normal_(self.decode_head.classifier.weight, std=0.01)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.config.in_channels, self.min_size)
        if self.input_resizer is None:
            return self.decode_head(self.encoder(pixel_values))
        logits = self.decode_head(self.encoder(self.input_resizer(pixel_values, self.config.input_resizer)))
        h, w = pixel_values.shape[-2:]
        stride = self.config.output_stride
        size = ((h + stride - 1) // stride, (w + stride - 1) // stride)
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def no_weight_decay(self) -> set[str]:
        return no_weight_decay(self)

    def save_pretrained(
        self, directory: str | os.PathLike, model_card: bool = False, model_card_kwargs: dict | None = None
    ) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``, atomically;
        with ``model_card`` also a ``README.md`` model card (kept if one exists;
        ``model_card_kwargs`` go to ``models.hub.model_card``: profile, metrics, dataset ...).
        ``SegmentationModel.from_pretrained`` reads it back."""
        directory = super().save_pretrained(directory)
        if model_card:
            write_model_card(self, directory, **(model_card_kwargs or {}))
        return directory


def check_pixel_values(pixel_values: torch.Tensor, in_channels: int, min_size: int) -> None:
    if pixel_values.ndim != 4 or pixel_values.shape[1] != in_channels:
        raise ValueError(f"expected pixel_values of shape [B, {in_channels}, H, W], got {tuple(pixel_values.shape)}")
    if min(pixel_values.shape[-2:]) < min_size:
        raise ValueError(
            f"input {tuple(pixel_values.shape[-2:])} is too small: height and width must be >= {min_size}"
        )


def no_weight_decay(model: nn.Module) -> set[str]:
    """Names of parameters that should not be weight-decayed: biases, norm weights and
    other vectors or scalars (gains, layer scales), and rotary frequencies, which
    decay would pull toward zero, i.e. toward no position information."""
    names = {n for n, p in model.named_parameters() if p.ndim <= 1}
    for prefix, module in model.named_modules():
        if isinstance(module, RotaryEmbedding2d):
            names |= {f"{prefix}.{n}" for n, _ in module.named_parameters()}
    return names


def initialise(model: nn.Module) -> None:
    """``init_weights`` everywhere, then layers that must start as an identity map
    (``reset_to_identity``) are reset."""
    model.apply(init_weights)
    for module in model.modules():
        if hasattr(module, "reset_to_identity"):
            module.reset_to_identity()


@torch.no_grad()
def init_weights(module: nn.Module) -> None:
    """SegFormer's initialisation: truncated normal(0.02) Linear weights, He-style
    normal(0, sqrt(2 / fan_out)) convolutions, unit norms, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        module.weight.normal_(0.0, (2.0 / fan_out) ** 0.5)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
