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

import torch
from torch import nn

from .config import ModelConfig
from .encoder import HierarchicalEncoder
from .pretrained import CLASSIFICATION, PretrainedMixin
from .segmentation_model import SegmentationModel, check_pixel_values, initialise, no_weight_decay


class ImageClassifier(PretrainedMixin, nn.Module):
    """``model(pixel_values[B, 3, H, W]) -> logits[B, num_classes]``, any H, W >= 32.

    ``save_pretrained`` writes ``config.json`` (with ``"task": "classification"``) and
    ``model.safetensors``; ``ImageClassifier.from_pretrained`` reads it back, ``create_model``
    and ``load_model`` take its encoder."""

    min_size = SegmentationModel.min_size
    task = CLASSIFICATION

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
