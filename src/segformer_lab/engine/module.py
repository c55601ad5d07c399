"""The LightningModule: a segmentation model, its loss, validation metrics and the
optimiser recipe. Everything else (loops, devices, precision, checkpoints) is Lightning's."""

from __future__ import annotations

import random
from typing import Any

import lightning.pytorch as L
import numpy as np
import torch

from ..inference import predict_labels
from ..models.pretrained import MODEL_CONFIG_KEY
from .losses import upsampled_cross_entropy
from .metrics import SegmentationMetrics
from .optim import OptimConfig, build_optimizer, build_scheduler


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stops before anything is saved."""


class TrainingModule(L.LightningModule):
    """What every task's module shares: the model, the optimiser recipe (``configure_optimizers``),
    a training step that stops every process on a non-finite loss, and in checkpoints the
    random state and the model's config (so that a ``.ckpt`` describes its model:
    ``load_model`` reads it alone). Subclasses define ``loss(batch)`` and validation."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig | None = None) -> None:
        super().__init__()
        self.model = model
        self.optim = optim or OptimConfig()
        self.val_scores: dict[str, torch.Tensor] = {}
        self._rng_to_restore: dict[str, Any] | None = None

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every sample of the batch was a bad file (skip_bad)
            return None
        loss = self.loss(batch)
        # decided together, so that under DDP every process stops (none waits for the others)
        if not self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True):
            raise NonFiniteLossError(
                f"training loss is not finite (here: {loss.item()}) at step {self.global_step} (epoch "
                f"{self.current_epoch}); stopping. Nothing was saved after the last good checkpoint: lower "
                "optim.lr, set trainer.gradient_clip_val, or check the data before resuming")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.optim)
        scheduler = build_scheduler(optimizer, self.optim, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # Random state: Lightning checkpoints do not hold it; without it a resumed run would
    # draw other dropout / drop-path masks. Restored when training (re)starts, after any
    # sanity validation. The model's config (what its config.json holds; plain JSON types,
    # read with weights_only=True) is only read by the checkpoint loaders: Lightning's
    # own ``hyper_parameters`` are empty here (the model is given, not built from them).
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = get_rng_states()
        checkpoint[MODEL_CONFIG_KEY] = self.model.pretrained_config()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("rng_states")

    def on_train_start(self) -> None:
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None


class SegmentationModule(TrainingModule):
    """Cross-entropy (``ignore_index`` 255) on logits upsampled to the label size (fused:
    ``losses.upsampled_cross_entropy``); validation with ``predict_labels(**inference)``
    into a confusion matrix synchronised across processes, logged as ``val/mIoU``,
    ``val/mAcc``, ``val/aAcc`` in percent. The scores of the last validation (with the
    matrix) stay in ``val_scores``."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig | None = None,
                 inference: dict[str, Any] | None = None) -> None:
        super().__init__(model, optim)
        self.inference = dict(inference or {})
        self.val_metrics = SegmentationMetrics(model.config.num_classes)

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        return upsampled_cross_entropy(self.model(batch["pixel_values"]), batch["labels"])

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is None:
            return
        images, labels = batch["pixel_values"], batch["labels"]
        if torch.is_tensor(images) and torch.is_tensor(labels):  # one size: score the batch at once
            images, labels = [images], [labels]
        else:  # a list of differently sized samples
            images, labels = [x[None] for x in images], [y[None] for y in labels]
        for image, label in zip(images, labels):
            self.val_metrics.update(predict_labels(self.model, image, label.shape[-2:], **self.inference), label)

    def on_validation_epoch_end(self) -> None:
        self.val_scores = self.val_metrics.compute()  # summed over processes
        self.val_metrics.reset()
        # identical on every process already: no further sync
        self.log_dict({f"val/{k}": 100 * self.val_scores[k].float() for k in ("mIoU", "mAcc", "aAcc")},
                      prog_bar=True, sync_dist=False)


def get_rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, in types that
    ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                      gauss], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
