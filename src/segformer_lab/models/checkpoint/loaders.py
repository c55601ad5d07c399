"""The public loaders: weights into a model, or the model a checkpoint describes.

Every source goes through one pipeline: read -> unwrap -> detect (``reading``) -> rename
(``convert``) -> compare and load (``compare``); the architecture of a model to build
comes from ``architecture``.
"""

from __future__ import annotations

import logging
import os

from torch import nn

from ..classifier import ImageClassifier
from ..hub import resolve_checkpoint
from ..pretrained import MODEL_CONFIG_KEY, CheckpointError
from ..segmentation_model import SegmentationModel
from . import rope_original
from .architecture import segmentation_config
from .compare import LoadReport, load_converted
from .convert import convert
from .formats import OWN_CLASSIFIER_FORMAT
from .reading import read

log = logging.getLogger("segformer_lab")


def load_weights(model: nn.Module, path: str | os.PathLike, reset_classifier: bool = False) -> LoadReport:
    """Load a checkpoint of any supported format into ``model``.

    Differences are explained or refused: a missing decode head (encoder-only
    checkpoints), a classifier for another class count (only with
    ``reset_classifier=True``), keys the model or the key format declares optional and
    ignorable entries (an ImageNet classifier or ours, mmseg's auxiliary head) are logged
    and reported; any other missing, unexpected or differently shaped key raises
    ``CheckpointError`` naming the keys and both shapes, and the model is left untouched.
    """
    source = read(path)
    rope_original.check_model(source.hf_config, model, str(source.path))
    converted, ignored = convert(source)
    report = load_converted(model, source, converted, ignored, reset_classifier)
    log.info("loaded %s (%s format); %s", source.path, source.format.name, "; ".join(report.notes) or "all keys matched")
    return report


def load_model(path: str | os.PathLike) -> SegmentationModel:
    """Build the model a checkpoint describes and load it; returned in eval mode.

    ``path``: a file or directory, or a Hugging Face Hub model id (``owner/name``,
    ``owner/name@revision``) read from its snapshot in huggingface_hub's cache, fetched if
    missing (``models.hub.resolve_checkpoint``; a local path of the same spelling wins).
    The architecture comes from the checkpoint's own config (``config.json``, ours or
    Hugging Face's, or the config a training run's ``.ckpt`` carries) or, for a bare
    weights file, from the tensor shapes (see ``architecture.infer_config`` for what is
    assumed). Encoder-only checkpoints get a fresh decode head with 150 classes; fine-tune
    it, or use ``create_model(..., pretrained=path)`` to choose.
    """
    source = read(path)
    converted, ignored = convert(source)
    try:
        assumptions: list[str] = []
        config = segmentation_config(source, converted, assumptions)
        for note in assumptions:
            log.warning("%s: %s", source.path, note)
        model = SegmentationModel(config)
        report = load_converted(model, source, converted, ignored, reset_classifier=False)
    except CheckpointError as e:
        if source.lightning and source.own_config is None:
            raise CheckpointError(
                f"{e}. {source.path} is a Lightning checkpoint without the model config that segformer-lab "
                f"stores in it ({MODEL_CONFIG_KEY!r}; written by an older version), and its architecture is not "
                "the one inferred from the weights: build the model yourself and load it, "
                "create_model(config=..., pretrained=path) (the run's config.yaml names it)"
            ) from None
        raise
    summary = "; ".join(report.notes) or "all keys matched"
    log.info("loaded %s (%s format) as %s; %s", source.path, source.format.name, config.name, summary)
    return model.eval()


def load_classifier_weights(model: ImageClassifier, path: str | os.PathLike) -> LoadReport:
    """Load an ``ImageClassifier`` checkpoint of ours (a directory, its
    ``model.safetensors``, or a classification run's ``.ckpt``) into ``model``, all of it;
    any difference in keys or shapes is a ``CheckpointError`` naming them, and the model
    is left untouched."""
    source = read(path)
    if source.format != OWN_CLASSIFIER_FORMAT:
        raise CheckpointError(
            f"{path}: not an image classifier saved by segformer-lab ({source.format.name} format); a classifier "
            "loads only those (a segmentation model takes the encoder of any checkpoint: create_model(pretrained=...))"
        )
    return load_converted(model, source, source.state, {}, reset_classifier=False)


def load_classifier(path: str | os.PathLike) -> ImageClassifier:
    """The ``ImageClassifier`` a classifier directory (``save_pretrained``) describes, with
    its weights; returned in eval mode (``ImageClassifier.from_pretrained``). ``path`` may
    be a Hub id, as for ``load_model``."""
    return ImageClassifier.from_pretrained(resolve_checkpoint(path))
