"""Image classification over the segmentation encoder, for encoder pre-training.

``ImageClassifier`` is ``HierarchicalEncoder`` -> mean over the tokens of the last stage
-> a ``classifier`` Linear, as Hugging Face's ``SegformerForImageClassification`` and
NVlabs' MiT ImageNet models (no norm of its own: the last stage's final norm, where the
config has one, is the encoder's). It is built from any ``ModelConfig`` (``num_classes``
counts image classes; the decoder settings and ``input_resizer`` are segmentation's and
unused), so every registered encoder can be pre-trained. Its ``encoder.*`` parameters
have the segmentation model's names: a classifier checkpoint initialises a segmentation
model's encoder (``create_model(name, pretrained=classifier_dir)``: ``classifier.*`` is
ignored, the decode head starts fresh).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig
from .encoder import HierarchicalEncoder
from .registry import build_config
from .segmentor import SegmentationModel, check_pixel_values, initialise, no_weight_decay, write_pretrained

TASK = "classification"  # config.json's "task" entry


class ImageClassifier(nn.Module):
    """``model(pixel_values[B, 3, H, W]) -> logits[B, num_classes]``, any H, W >= 32."""

    min_size = SegmentationModel.min_size

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = HierarchicalEncoder(config)
        self.classifier = nn.Linear(config.widths[-1], config.num_classes)
        initialise(self)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        check_pixel_values(pixel_values, self.config.in_channels, self.min_size)
        last = self.encoder(pixel_values)[-1]
        return self.classifier(last.mean(dim=(2, 3)))

    def no_weight_decay(self) -> set[str]:
        return no_weight_decay(self)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """``config.json`` (with ``"task": "classification"``) and ``model.safetensors``,
        atomically; ``ImageClassifier.from_pretrained`` reads it back, ``create_model``
        and ``load_model`` take its encoder."""
        return write_pretrained(self, directory, task=TASK)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> ImageClassifier:
        """A classifier directory written by ``save_pretrained``; returned in eval mode."""
        from .checkpoint import load_classifier

        return load_classifier(path)


def create_classifier(
    name: str | None = None,
    num_classes: int | None = None,
    pretrained: str | os.PathLike | None = None,
    *,
    config: ModelConfig | None = None,
    **overrides,
) -> ImageClassifier:
    """An ``ImageClassifier`` over the encoder of a registered segmentation model
    (``create_classifier("boostformer_b2", num_classes=200)``) or of ``config``;
    ``overrides`` are ``ModelConfig`` fields, as for ``create_model``. ``pretrained``: a
    classifier checkpoint of the same architecture (all of it is loaded)."""
    model = ImageClassifier(build_config(name, config, num_classes, overrides))
    if pretrained is not None:
        from .checkpoint import load_classifier_weights

        load_classifier_weights(model, pretrained)
    return model
