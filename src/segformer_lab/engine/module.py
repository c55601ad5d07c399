"""The LightningModule: a segmentation model, its loss, validation metrics and the
optimiser recipe. Everything else (loops, devices, precision, checkpoints) is Lightning's."""

from __future__ import annotations

import random
from typing import Any, Callable, NoReturn

import lightning.pytorch as L
import numpy as np
import torch
from torch.nn.utils import get_total_norm

from ..inference import predict_labels
from ..models.pretrained import MODEL_CONFIG_KEY
from .callbacks import LastCheckpoint
from .losses import upsampled_cross_entropy
from .metrics import SegmentationMetrics
from .optim import OptimConfig, build_optimizer, build_scheduler

# Largest weight norm (L2 over all parameters) of a healthy run, with a wide margin: it is
# about 130 for a fresh or trained SegFormer-B0 and 480 for a fresh B5 (the LayerNorm weights
# of 1 dominate; weight decay keeps trained weights near their start). AdamW moves each weight
# by at most about lr per step whatever the gradient: even with all of B5's 85M weights moving
# the same way every step, the norm would need 1e5 steps at lr 1e-3 to get there (2e6 at the
# recipe's 6e-5); a diverging rate crosses it in one step. The norm rather than max |w| (which
# it bounds): one fused pass, 20x faster than max |w| on CPU.
WEIGHT_NORM_LIMIT = 1e6


class NonFiniteLossError(FloatingPointError):
    """Training diverged: the loss or the gradients became NaN or infinite, or the weights'
    norm crossed ``WEIGHT_NORM_LIMIT`` (or is not finite). Raised before anything of that
    step is saved; the message names the last good checkpoint and how to resume from it.
    (The name predates the gradient and weight checks.)"""


class TrainingTask(L.LightningModule):
    """What every task's module shares: the model, the optimiser recipe (``configure_optimizers``,
    re-applied on resume so that ``--set optim.*`` takes effect), a divergence guard that stops
    every process before a poisoned state can be checkpointed (the loss before backward, the
    gradients before the optimiser step, the weights right after it: ``NonFiniteLossError``),
    and in checkpoints the random state and the model's config (so that a ``.ckpt`` describes
    its model: ``load_model`` reads it alone). Subclasses define ``loss(batch)`` and validation."""

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
        if not self._all_agree(bool(torch.isfinite(loss))):
            self._diverged(f"training loss is not finite (here: {loss.item()})", self.global_step)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return  # float16 loss scaling: the scaler skips steps with inf gradients and lowers its scale
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = get_total_norm(grads) if grads else torch.zeros(())
        if not self._all_agree(bool(torch.isfinite(norm))):
            self._diverged(f"the gradients are not finite (norm {norm.item()})", self.global_step)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any,
                       optimizer_closure: Callable[[], Any] | None = None) -> None:
        step = self.global_step  # counted up by the step
        try:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        except RuntimeError as err:  # a rate like 1e300 does not fit the weights' float type
            if "without overflow" not in str(err):
                raise
            self._diverged(f"the optimiser step overflowed ({err})", step)
        norm = get_total_norm([p.detach() for p in self.model.parameters()])
        if not self._all_agree(bool(norm <= WEIGHT_NORM_LIMIT)):  # False for NaN too
            self._diverged(f"the weights exploded (norm {norm.item():.3g} > {WEIGHT_NORM_LIMIT:g} after the "
                           "optimiser step)", step)

    def _all_agree(self, ok: bool) -> bool:
        """Decided together, so that under DDP every process stops (none waits for the others)."""
        return self.trainer.strategy.reduce_boolean_decision(ok, all=True)

    def _diverged(self, what: str, step: int) -> NoReturn:
        """Stop with one line: what diverged at which step, the checkpoint that is safe
        (``last.ckpt``: written only after these checks passed) and the command to resume it."""
        lower = f"optim.lr={min(self.optim.lr / 10, OptimConfig.lr):g}"
        last = next((c for c in self.trainer.checkpoint_callbacks if isinstance(c, LastCheckpoint)), None)
        saved = last.saved_step() if last else None
        if saved is None:
            where = (f"No checkpoint was written before it: lower optim.lr (e.g. --set {lower}), set "
                     "trainer.gradient_clip_val or check the data, then start the run again")
        else:
            where = (f"Last good checkpoint: {last.path} (step {saved}). Lower optim.lr, set trainer.gradient_clip_val "
                     f"or check the data, then resume from it: segformer-lab train --resume {last.path.parent.parent} "
                     f"--set {lower}")
        raise NonFiniteLossError(f"{what} at step {step} (epoch {self.current_epoch}); stopped before saving "
                                 f"anything of this step. {where}")

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.optim, self._fused_optimizer())
        scheduler = build_scheduler(optimizer, self.optim, self._total_steps())
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
        self._apply_optim_config()

    def _apply_optim_config(self) -> None:
        """Give the optimiser and the schedule this run's ``optim`` settings. A resumed run
        restores the saved ones (rates, decay, betas, the schedule's base rates, warmup and
        length): without this, ``--resume RUN --set optim.lr=...`` would change nothing."""
        optimizer, scheduler = self.optimizers(use_pl_optimizer=False), self.lr_schedulers()
        wanted = build_scheduler(build_optimizer(self.model, self.optim, self._fused_optimizer()), self.optim,
                                 self._total_steps())  # fmt: skip
        for group, new in zip(optimizer.param_groups, wanted.optimizer.param_groups, strict=True):
            group.update({k: v for k, v in new.items() if k not in ("params", "lr")})  # same model: same groups
            if group["fused"]:  # a checkpoint of an unfused optimiser keeps its step counts on the CPU
                for param in group["params"]:
                    if "step" in optimizer.state.get(param, {}):
                        optimizer.state[param]["step"] = optimizer.state[param]["step"].to(param.device, torch.float32)
        scheduler.base_lrs, scheduler.lr_lambdas = wanted.base_lrs, wanted.lr_lambdas
        for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base * factor(scheduler.last_epoch)

    def _fused_optimizer(self) -> bool:
        """The fused AdamW kernel, unless float16 training clips gradients: the fused step
        unscales them itself, after the point where clipping needs them unscaled."""
        return not (self.trainer.gradient_clip_val and str(self.trainer.precision).startswith("16"))

    def _total_steps(self) -> int:
        return int(self.trainer.estimated_stepping_batches)


class SegmentationTask(TrainingTask):
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
