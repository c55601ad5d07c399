"""transformers' SegFormer on our weights, for the bench's side-by-side comparisons: the
twin model, its own loss, and BatchNorm statistics that make a folding mistake visible."""

from __future__ import annotations

import logging
import tempfile

import torch
from torch import nn

from ..models import SegmentationModel, save_transformers
from ..models.labels import log as labels_log, resolve_class_names


def hf_loss(twin: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """transformers' own loss: its logits upsampled to the labels, cross-entropy ignoring 255."""
    return twin(pixel_values=pixel_values, labels=labels).loss


@torch.no_grad()
def randomise_batch_norms(model: nn.Module, seed: int = 0) -> None:
    """Random running statistics and affine for every BatchNorm. A fresh BatchNorm
    (mean 0, variance 1, identity affine) is nearly the identity in eval mode, which would
    hide a mistake in folding it into the decoder's projections."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.uniform_(0.5, 1.5, generator=generator)
            module.bias.normal_(0.0, 0.5, generator=generator)


class NoClassNameFallback(logging.Filter):
    """Drops ``resolve_class_names``' line about a model that stores no class names: the
    twin is compared by its logits, its names are never shown (and a registered name's
    random weights have none to store)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.funcName != resolve_class_names.__name__


def transformers_twin(model: SegmentationModel) -> nn.Module:
    """transformers' ``SegformerForSemanticSegmentation`` holding ``model``'s weights.

    The weights travel the way an exported checkpoint does: ``save_transformers`` writes
    the directory, ``from_pretrained`` reads it (applying transformers' own key
    conversions). Any key it misses or does not use is an error.
    """
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "comparing with transformers needs the transformers package (a test extra): "
            "pip install 'segformer-lab[test]'"
        ) from err

    progress_bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    quiet = NoClassNameFallback()
    labels_log.addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory() as directory:
            save_transformers(model, directory)
            twin, info = transformers.SegformerForSemanticSegmentation.from_pretrained(
                directory, output_loading_info=True
            )
    finally:
        labels_log.removeFilter(quiet)
        if progress_bar_was_on:
            hf_logging.enable_progress_bar()
    problems = {kind: sorted(map(str, items)) for kind, items in info.items() if items}
    if problems:
        raise ValueError(f"transformers did not take the weights cleanly: {problems}")
    return twin.eval()
