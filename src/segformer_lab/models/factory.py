"""Building models: ``create_model`` / ``create_classifier`` from a registered name or a
config, and ``open_model``, the one function that turns what a user gives (a model, a
checkpoint, a run directory, a Hub id, a name) into a segmentation model.

Sits above the registry, the model classes and checkpoint loading.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from .checkpoint import load_classifier_weights, load_model, load_weights
from .classifier import ImageClassifier
from .config import ModelConfig
from .hub import parse_hub_id
from .registry import get_config
from .segmentation_model import SegmentationModel

log = logging.getLogger("segformer_lab")


def build_config(
    name: str | None, config: ModelConfig | None, num_classes: int | None, overrides: dict
) -> ModelConfig:
    """The config a ``create_*(name or config=, num_classes, **overrides)`` call describes."""
    if (name is None) == (config is None):
        raise ValueError("pass exactly one of a model name or config=")
    if num_classes is not None:
        overrides = {**overrides, "num_classes": num_classes}
    return get_config(name, **overrides) if name is not None else config.replace(**overrides)


def create_model(
    name: str | None = None,
    num_classes: int | None = None,
    pretrained: str | os.PathLike | None = None,
    *,
    config: ModelConfig | None = None,
    reset_classifier: bool = False,
    class_names: Sequence[str] | None = None,
    **overrides,
) -> SegmentationModel:
    """Build a model by registered ``name`` (or from ``config``), optionally loading weights.

    ``pretrained`` is a checkpoint in any supported format (this project's directory,
    Hugging Face directory or file, NVlabs/mmseg ``.pth``) or a Hugging Face Hub model id
    (``"nvidia/mit-b0"``, ``"owner/name@revision"``; a local path of the same spelling
    wins; see ``models.hub.resolve_checkpoint``); missing and unused keys are
    reported, unexpected ones are errors. With ``reset_classifier=True`` a checkpoint with
    another class count loads everything but the classifier (for fine-tuning).
    ``class_names`` name the classes (their count is the class count unless ``num_classes``
    says otherwise, which is then an error); ``palette=[[r, g, b], ...]`` colours them.
    """
    if class_names is not None:
        num_classes = len(class_names) if num_classes is None else num_classes
        overrides = {**overrides, "class_names": class_names}
    model = SegmentationModel(build_config(name, config, num_classes, overrides))
    if pretrained is not None:
        load_weights(model, pretrained, reset_classifier=reset_classifier)
    return model


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
        load_classifier_weights(model, pretrained)
    return model


def open_model(source: str | os.PathLike | SegmentationModel, num_classes: int | None = None) -> SegmentationModel:
    """A segmentation model from what a user gives; in eval mode.

    ``source``: a model (returned as it is); a checkpoint path in any format ``load_model``
    reads (this project's or a Hugging Face directory, a run directory: its best weights,
    a training run's Lightning ``.ckpt``, which carries its model's config, a weights
    file); a Hugging Face Hub model id (``owner/name[@revision]``, when no local path has
    that spelling); or a registered model name (random weights, with a warning).
    ``num_classes`` sets the class count of a registered model; for a checkpoint or a
    model it must agree with theirs.
    """
    if isinstance(source, SegmentationModel):
        model = source
    elif Path(source).exists() or parse_hub_id(source) is not None:
        model = load_model(source)
    else:
        looks_like_a_path = any(sep in str(source) for sep in ("/", os.sep)) or Path(source).suffix != ""
        try:
            get_config(str(source))
        except KeyError as err:
            detail = "" if looks_like_a_path else f" ({err.args[0]})"
            raise FileNotFoundError(f"{source}: no such checkpoint, and not a registered model name{detail}") from None
        model = create_model(str(source), num_classes=num_classes)
        log.warning("%s: a registered model with random weights (no checkpoint): its output is noise", source)
    if num_classes is not None and model.config.num_classes != num_classes:
        raise ValueError(f"{source}: the model has {model.config.num_classes} classes, not {num_classes}")
    return model.eval()
