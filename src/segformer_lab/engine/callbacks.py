"""Lightning callbacks and the checkpoint I/O of a training run."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import lightning.pytorch as L
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from .._io import atomic_write
from ..models.checkpoint.reading import read_weights


class Throughput(Callback):
    """Logs ``train/img_per_s``: images per second over all processes, from the time
    between consecutive training steps (validation and epoch starts left out)."""

    def __init__(self) -> None:
        self._last: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last is not None and batch is not None:
            images = batch["pixel_values"].shape[0] * trainer.world_size
            pl_module.log("train/img_per_s", images / (now - self._last), prog_bar=True)
        self._last = now


class RestoreDataPosition(Callback):
    """Gives a resumed run's training loader its saved position in the epoch.

    Lightning applies saved loader states (``ResumableLoader.state_dict``) when it builds
    the training loader, but ``estimated_stepping_batches`` (needed by the schedule in
    ``configure_optimizers``) builds it before the checkpoint is read, so the states
    would be dropped; this applies them once training starts, before the first batch."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.fit_loop._load_combined_loader_states()


class TrainingStopped(Exception):
    """A run stopped by SIGTERM, at a safe point: the message says where the run is and how
    to continue it."""


class BestCheckpoint(ModelCheckpoint):
    """Keeps the best checkpoint by ``monitor`` and mirrors its weights into ``export_dir``
    with ``model.save_pretrained`` (config.json + model.safetensors), so that
    ``load_model(export_dir)`` is the best model so far. A run directory can be moved or
    copied: the bookkeeping restored on resume is read relative to the checkpoint folder
    (``load_state_dict``)."""

    def __init__(self, export_dir: str | os.PathLike, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.export_dir = Path(export_dir)
        self._exported = ""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A run killed between saving a new best and deleting the old one leaves two (or,
        past its last.ckpt, one the resumed run never reached): keep only the one that the
        restored bookkeeping names. (A new run has none of its own: any there belong to the
        run it replaces, removed when training starts.)"""
        if trainer.ckpt_path and trainer.is_global_zero and self.dirpath and self.filename:
            keep = Path(self.best_model_path).name if self.best_model_path else None
            pattern = f"{self.filename.split('{')[0]}*{self.FILE_EXTENSION}"
            for path in Path(self.dirpath).glob(pattern):
                if path.name != keep:
                    path.unlink()

    # Lightning saves at the end of validation or, when validation ends the epoch, at
    # the end of the training epoch: export right after either.
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self._export(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        self._export(trainer, pl_module)

    def _export(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.best_model_path != self._exported:  # a new best was just saved
            self._exported = self.best_model_path
            if trainer.is_global_zero:
                pl_module.model.save_pretrained(self.export_dir)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Lightning restores the best score and checkpoints only when the checkpoint folder's
        absolute path is the saved one (after a move, the first validation would count as the
        best and the old best file would stay): the saved paths inside the saved folder are
        taken as the same files in this one."""
        saved = state_dict.get("dirpath")
        if saved and self.dirpath and saved != self.dirpath:
            def here(path: str) -> str:
                try:
                    return str(Path(self.dirpath) / Path(path).relative_to(saved)) if path else path
                except ValueError:  # not in the run's checkpoint folder: not the run's
                    return path

            state_dict = {**state_dict, "dirpath": self.dirpath,
                          **{key: here(state_dict[key]) for key in ("best_model_path", "kth_best_model_path",
                                                                    "last_model_path") if key in state_dict},
                          "best_k_models": {here(k): v for k, v in state_dict.get("best_k_models", {}).items()}}
        super().load_state_dict(state_dict)
        self._exported = self.best_model_path


class LastCheckpoint(Checkpoint):
    """Writes ``last.ckpt`` after each mid-epoch validation, at each epoch end and, with
    ``every_n_steps``, every n optimiser steps; on SIGTERM, at the end of the next optimiser
    step, and stops the run there (Lightning's ``SIGTERMException``, which it would raise a
    moment later without saving).

    Lightning's ``ModelCheckpoint(save_last=True)`` refreshes ``last`` only when it saves
    a top-k checkpoint, and never twice at one step, so ``last`` could predate the latest
    validation. Being a ``Checkpoint``, this runs after ``BestCheckpoint`` in every hook:
    the best-model bookkeeping inside ``last.ckpt`` is current. Every save follows the
    module's divergence checks of the same step, so the file is always a good state: the
    one a diverged run names for resuming (``saved_step``)."""

    def __init__(self, path: str | os.PathLike, every_n_steps: int | None = None) -> None:
        self.path, self.every_n_steps = Path(path), every_n_steps
        self._step_saved = self._step_seen = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._step_seen = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        stepped, self._step_seen = step != self._step_seen, step  # not inside a gradient accumulation
        # Lightning's SIGTERM handler sets the flag (on rank 0 under DDP): every process stops at the same step
        stop = stepped and trainer.strategy.reduce_boolean_decision(trainer.received_sigterm, all=False)
        if (stop or self.every_n_steps and step % self.every_n_steps == 0) and step != self._step_saved:
            self._step_saved = step
            trainer.save_checkpoint(self.path, weights_only=False)
        if stop:
            raise SIGTERMException

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        at_epoch_end = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch  # saved on_train_epoch_end
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and not at_epoch_end:
            trainer.save_checkpoint(self.path, weights_only=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)

    def saved_step(self) -> int | None:
        """The step of the checkpoint on disk, None if there is none (read from the file:
        it may predate this session)."""
        if not self.path.is_file():
            return None
        return read_weights(self.path, mmap=True)["global_step"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``.ckpt`` files, written to a temporary file beside the target and
    renamed over it (Lightning's own writer stages in the system temp directory and
    copies when that is another file system: a kill mid-copy leaves a truncated
    checkpoint), and read with ``torch.load(weights_only=True)``: nothing is unpickled
    that could run code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike,
                        storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path: str | os.PathLike, map_location: Callable | None = None,
                        weights_only: bool | None = None) -> dict[str, Any]:
        return read_weights(Path(path))  # on the CPU; a damaged or unsafe file is one CheckpointError naming it
