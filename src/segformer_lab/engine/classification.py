"""The LightningModule of encoder pre-training: image classification (Tiny-ImageNet).

A ``TrainingTask`` like ``SegmentationTask`` (same optimiser recipe, non-finite loss
stop and random-state checkpointing): cross-entropy (optional label smoothing) on ``model(pixel_values) ->
[B, K]`` logits, and top-1 / top-5 accuracy summed across processes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from .module import TrainingTask
from .optim import OptimConfig

TOP_K = (1, 5)


class ClassificationTask(TrainingTask):
    """Trains an ``ImageClassifier`` on batches ``{"pixel_values", "label"}``; validation
    logs ``val/top1`` and ``val/top5`` in percent (top-5 is top-K with fewer than 5
    classes). The scores of the last validation stay in ``val_scores`` (fractions)."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__(model, optim)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        classes = model.config.num_classes
        self.val_metrics = MetricCollection({
            f"top{k}": MulticlassAccuracy(classes, top_k=min(k, classes), average="micro") for k in TOP_K
        })

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        logits = self.model(batch["pixel_values"])
        return F.cross_entropy(logits.float(), batch["label"], label_smoothing=self.label_smoothing)

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is not None:
            self.val_metrics.update(self.model(batch["pixel_values"]), batch["label"])

    def on_validation_epoch_end(self) -> None:
        self.val_scores = self.val_metrics.compute()  # summed over processes
        self.val_metrics.reset()
        # identical on every process already: no further sync
        self.log_dict({f"val/{k}": 100 * v.float() for k, v in self.val_scores.items()}, prog_bar=True,
                      sync_dist=False)
