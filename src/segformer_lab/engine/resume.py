"""What a resumed run may change, checked before anything is written, and the config's
optimiser settings put over the optimiser and schedule a checkpoint restores.

A resume continues the same run: the model, the data and how the best checkpoint is
chosen stay; the optimiser (``optim.*``), the run's length, logging, hardware, checkpoint
frequency and loader workers may change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as L
from lightning.pytorch.callbacks import Callback

from ..models.checkpoint.reading import read_weights
from ..models.pretrained import MODEL_CONFIG_KEY, CheckpointError
from .optim import build_optimizer, build_scheduler

MAY_CHANGE = (("optim",), ("checkpoint",), ("trainer",), ("data", "num_workers"), ("data", "val_batch_size"))
# Trainer arguments that change which batches one step trains on: the saved data position would not fit.
FIXED_TRAINER = {"accumulate_grad_batches", "devices", "num_nodes", "limit_train_batches", "overfit_batches"}
WHY = {
    "model": "it changes the architecture or its initial weights",
    "data": "it changes the data the run learns from",
    "val": "it changes how checkpoints are scored and the best one chosen",
    "classification": "it changes the loss",
    "seed": "it changes the run's random streams",
    "task": "it changes what is learned",
    "trainer": "it changes the batches one step trains on, and the saved data position would not fit",
}
MISSING = object()


def _changes(old: Any, new: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in (*old, *(k for k in new if k not in old)):
            yield from _changes(old.get(key, MISSING), new.get(key, MISSING), (*path, key))
    elif old != new:
        yield path, old, new


def check_resume(stored: dict[str, Any], config: dict[str, Any], where: Path) -> None:
    """Refuse a change from the run's config (``stored``, read from ``where``) that a
    resumed run cannot take, naming the key and why."""
    for key, old, new in _changes(stored, config):
        allowed = any(key[:len(prefix)] == prefix for prefix in MAY_CHANGE)
        if allowed and not (key[0] == "trainer" and key[1] in FIXED_TRAINER):
            continue
        shown = ["(unset)" if v is MISSING else repr(v) for v in (old, new)]
        raise ValueError(f"{'.'.join(key)} cannot change on resume ({where} has {shown[0]}, asked {shown[1]}): "
                         f"{WHY[key[0]]}; start a new run instead (model.pretrained={where.parent} reuses its weights)")


def check_checkpoint(path: Path, model_config: dict[str, Any]) -> None:
    """The checkpoint to resume from can be read safely and holds the model the config
    describes."""
    try:
        state = read_weights(path)
    except CheckpointError as e:
        raise ValueError(f"cannot resume: {str(e).splitlines()[0]}") from e
    stored = state.get(MODEL_CONFIG_KEY) if isinstance(state, dict) else None
    if stored is not None and stored != model_config:
        keys = sorted(k for k in {*stored, *model_config} if stored.get(k) != model_config.get(k))
        raise ValueError(f"{path} holds another model than the run's config describes (differing: {', '.join(keys)}):"
                         " resume with the config it was trained with")


class ApplyOptimConfig(Callback):
    """Lightning restores AdamW's settings (lr, betas, eps, weight decay) and the
    schedule's (base lrs, and total and warmup, the schedule being an object) from the
    checkpoint, so a resumed run's ``optim.*`` would do nothing. When training starts,
    this puts the config's values back over them, keeping the step, the moments and the
    position in the schedule (unchanged settings give the restored values exactly)."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizer, scheduler = trainer.optimizers[0], trainer.lr_scheduler_configs[0].scheduler
        # throwaways over the same parameters: only their settings are read
        fresh = build_scheduler(build_optimizer(pl_module.model, pl_module.optim), pl_module.optim,
                                int(trainer.estimated_stepping_batches))
        scheduler.base_lrs, scheduler.lr_lambdas = list(fresh.base_lrs), list(fresh.lr_lambdas)
        for group, new, factor in zip(optimizer.param_groups, fresh.optimizer.param_groups, fresh.lr_lambdas):
            group.update({k: new[k] for k in ("initial_lr", "weight_decay", "betas", "eps")})
            group["lr"] = new["initial_lr"] * factor(scheduler.last_epoch)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
