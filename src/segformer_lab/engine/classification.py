"""The LightningModule of encoder pre-training: image classification (Tiny-ImageNet).

As thin as ``SegmentationModule``, and sharing its optimiser recipe and random-state
checkpointing: cross-entropy (optional label smoothing) on ``model(pixel_values) ->
[B, K]`` logits, and top-1 / top-5 accuracy summed across processes."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from .module import NonFiniteLossError, SegmentationModule
from .optim import OptimConfig

TOP_K = (1, 5)


class ClassificationModule(L.LightningModule):
    """Trains an ``ImageClassifier`` on batches ``{"pixel_values", "label"}``; validation
    logs ``val/top1`` and ``val/top5`` in percent (top-5 is top-K with fewer than 5
    classes). The scores of the last validation stay in ``val_scores`` (fractions)."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.model = model
        self.optim = optim or OptimConfig()
        self.label_smoothing = label_smoothing
        classes = model.config.num_classes
        self.val_metrics = MetricCollection({
            f"top{k}": MulticlassAccuracy(classes, top_k=min(k, classes), average="micro") for k in TOP_K
        })
        self.val_scores: dict[str, torch.Tensor] = {}
        self._rng_to_restore: dict[str, Any] | None = None

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every sample of the batch was a bad file (skip_bad)
            return None
        logits = self.model(batch["pixel_values"])
        loss = F.cross_entropy(logits.float(), batch["label"], label_smoothing=self.label_smoothing)
        # decided together, so that under DDP every process stops (none waits for the others)
        if not self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True):
            raise NonFiniteLossError(
                f"training loss is not finite (here: {loss.item()}) at step {self.global_step} (epoch "
                f"{self.current_epoch}); stopping. Nothing was saved after the last good checkpoint: lower "
                "optim.lr, set trainer.gradient_clip_val, or check the data before resuming")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is not None:
            self.val_metrics.update(self.model(batch["pixel_values"]), batch["label"])

    def on_validation_epoch_end(self) -> None:
        self.val_scores = self.val_metrics.compute()  # summed over processes
        self.val_metrics.reset()
        # identical on every process already: no further sync
        self.log_dict({f"val/{k}": 100 * v.float() for k, v in self.val_scores.items()}, prog_bar=True,
                      sync_dist=False)

    # The segmentation module's, unchanged: AdamW groups + warmup/poly, and the random
    # state in checkpoints (they use only self.model, self.optim, self._rng_to_restore).
    configure_optimizers = SegmentationModule.configure_optimizers
    on_save_checkpoint = SegmentationModule.on_save_checkpoint
    on_load_checkpoint = SegmentationModule.on_load_checkpoint
    on_train_start = SegmentationModule.on_train_start
