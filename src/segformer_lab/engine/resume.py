"""What a resumed run may change, checked before anything is written (the module puts
the config's ``optim`` settings over the ones a checkpoint restores:
``TrainingTask._apply_optim_config``).

A resume continues the same run: the model, the data and how the best checkpoint is
chosen stay; the optimiser (``optim.*``), the run's length, logging, hardware, checkpoint
frequency and loader workers may change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from ..models.checkpoint.reading import read_weights
from ..models.pretrained import MODEL_CONFIG_KEY, CheckpointError

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
# config.json keys that describe the model, not build it: a checkpoint without them fits
DESCRIPTIVE = ("id2label", "palette", "preprocessing")


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
    describes (its tensors are mapped, not read: Lightning reads them when it restores)."""
    try:
        state = read_weights(path, mmap=True)
    except CheckpointError as e:
        raise ValueError(f"cannot resume: {str(e).splitlines()[0]}") from e
    stored = state.get(MODEL_CONFIG_KEY) if isinstance(state, dict) else None
    if stored is None:
        return
    keys = sorted(k for k in {*stored, *model_config} if k not in DESCRIPTIVE and stored.get(k) != model_config.get(k))
    if keys:
        raise ValueError(f"{path} holds another model than the run's config describes (differing: {', '.join(keys)}):"
                         " resume with the config it was trained with")
