"""One owner per run directory, and the run directory's housekeeping.

A training process owns its run directory through an advisory lock (``fcntl.flock`` on
``RUN/.lock``): the kernel drops it when the process ends, however it ends, so a killed
run never leaves it stuck, and a second training into the same directory fails at once
naming the owner written in the file. Under DDP only global rank 0 takes it (the other
ranks write nothing into the directory). While holding it, the owner removes what a
killed run left half-written, and refuses to start a new run over an earlier run's files
unless told to replace them.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as L
import yaml
from lightning.pytorch.callbacks import Callback

from .._io import atomic_write, is_temporary
from ..models.pretrained import CONFIG_NAME, WEIGHTS_NAME

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
LOCK_FILE = ".lock"
RUN_FILES = (CONFIG_FILE, CONFIG_NAME, WEIGHTS_NAME, CHECKPOINT_DIR, "logs")  # what a run writes


class RunDirectoryBusy(ValueError):
    """Another process owns the run directory."""


@contextmanager
def own_run_directory(run_dir: Path, resume: bool = False, overwrite: bool = False) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the body; first remove a killed run's temporary files
    and, for a new run (``resume`` False), refuse an earlier run's files or, with
    ``overwrite``, delete them (only the files a run writes; anything else stays)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = _lock(run_dir)
    try:
        for folder in (run_dir, run_dir / CHECKPOINT_DIR):
            for path in folder.glob(".*.tmp-*"):
                if is_temporary(path):
                    path.unlink()
        if not resume:
            _clear(run_dir, overwrite)
        yield
    finally:
        handle.close()  # releases the lock


def _lock(run_dir: Path) -> Any:
    handle = open(run_dir / LOCK_FILE, "a+", encoding="utf-8")  # noqa: SIM115 - held until the run ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise RunDirectoryBusy(f"{run_dir} is in use by another training ({owner}): wait for it to end or train "
                               "into another directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def _clear(run_dir: Path, overwrite: bool) -> None:
    found = [run_dir / name for name in RUN_FILES if (run_dir / name).exists()]
    if found and not overwrite:
        raise ValueError(f"{run_dir} holds an earlier run ({', '.join(p.name for p in found)}): continue it with "
                         "--resume, replace it with --overwrite, or choose another directory")
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


class WriteConfig(Callback):
    """Writes the resolved config as ``config.yaml`` when training starts, after the
    checkpoint of a resumed run is restored: a run that fails before that leaves the
    previous file as it was."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.path, self.config = run_dir / CONFIG_FILE, config

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            atomic_write(self.path, lambda p: p.write_text(yaml.safe_dump(self.config, sort_keys=False)))
