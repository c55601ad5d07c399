"""One owner per run directory, and what a run may write, replace and remove there.

A training process owns its run directory through an advisory lock (``fcntl.flock`` on
``RUN/.lock``): the kernel drops it when the process ends, however it ends, so a killed
run never leaves it stuck, and a second training into the same directory fails at once
naming the owner written in the file. Under DDP only global rank 0 takes it (the other
ranks write nothing into the directory). While holding it, the owner removes what a
killed run left half-written, and refuses to start a new run over an earlier run's files
unless told to replace them; it removes the lock file when it ends.

A directory holds an earlier run only on evidence that this project wrote it
(``written_by_a_run``): the run marker ``.segformer-lab-run``, a ``config.yaml`` of an
experiment, or checkpoints by our names. Replacing a run removes the files a run writes
(``RUN_WRITES``), by name, and the run's folders left empty; nothing else. It happens
when the new run starts training (``StartRun``): by then its whole config has been
checked, its model, data, optimiser and schedule built and its sanity validation passed,
so a run that cannot start leaves the earlier one as it was. A new run that stops before
its first training step removes what it wrote (``remove_run``), so the same command can
run again.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import lightning.pytorch as L
import yaml
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from .._io import atomic_write, is_temporary, read_json, write_json
from ..models.pretrained import CONFIG_NAME, WEIGHTS_NAME

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT = "best-e{epoch:03d}-s{step:06d}"  # Lightning's filename template of the best checkpoint
LOGS_DIR = "logs"
LOCK_FILE = ".lock"
MARKER_FILE = ".segformer-lab-run"  # written when a run starts training: this directory holds a run
MARKER = "segformer-lab train"  # what the marker says wrote the directory
# What a run writes, by name (globs relative to the run directory), and its folders, deepest first:
# --overwrite removes these and nothing else, and a folder only once it is empty.
RUN_WRITES = (
    CONFIG_FILE, CONFIG_NAME, WEIGHTS_NAME,
    f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT}", f"{CHECKPOINT_DIR}/best-e*-s*.ckpt",
    f"{LOGS_DIR}/csv/version_*/metrics.csv", f"{LOGS_DIR}/csv/version_*/hparams.yaml",
    f"{LOGS_DIR}/tensorboard/version_*/events.out.tfevents.*", f"{LOGS_DIR}/tensorboard/version_*/hparams.yaml",
    MARKER_FILE,
)
RUN_FOLDERS = (f"{LOGS_DIR}/*/version_*", f"{LOGS_DIR}/csv", f"{LOGS_DIR}/tensorboard", LOGS_DIR, CHECKPOINT_DIR)
RUN_SECTIONS = ("model", "data", "optim", "trainer")  # every config.yaml a run writes has these mappings


class RunDirectoryBusy(ValueError):
    """Another process owns the run directory."""


@contextmanager
def own_run_directory(run_dir: Path, resume: bool = False, overwrite: bool = False) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the body; first remove a killed run's temporary files
    and, for a new run (``resume`` False), refuse an earlier run's files (``check_new_run``;
    ``overwrite``: accept them, ``StartRun`` removes them). Afterwards the lock file goes,
    and the directory too when this created it and nothing was left in it."""
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        handle = _lock(run_dir)
        try:
            for folder in (run_dir, run_dir / CHECKPOINT_DIR):
                for path in folder.glob(".*.tmp-*"):
                    if is_temporary(path):
                        path.unlink()
            if not resume:
                check_new_run(run_dir, overwrite)
            yield
        finally:
            (run_dir / LOCK_FILE).unlink(missing_ok=True)  # before the release: a waiting process sees it busy
            handle.close()  # releases the lock
    finally:
        if created and run_dir.is_dir() and not any(run_dir.iterdir()):
            run_dir.rmdir()


def _lock(run_dir: Path) -> Any:
    path = run_dir / LOCK_FILE
    while True:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until the run ends
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise RunDirectoryBusy(f"{run_dir} is in use by another training ({owner}): wait for it to end or "
                                   "train into another directory") from None
        try:  # the owner removes the file as it ends: a lock taken on the removed file owns nothing
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def _run_paths(run_dir: Path, patterns: tuple[str, ...]) -> Iterator[Path]:
    """The paths matching ``patterns`` in ``run_dir``, none reached through a link to a folder
    (whatever that links to is not the run's)."""
    for pattern in patterns:
        for path in sorted(run_dir.glob(pattern)):
            folders = path.relative_to(run_dir).parents
            if not any((run_dir / folder).is_symlink() for folder in list(folders)[:-1]):
                yield path


def run_files(run_dir: Path) -> list[str]:
    """The names in ``run_dir`` of what a run writes (``config.yaml``, ``checkpoints``, ...)
    that are there, whoever wrote them."""
    names = dict.fromkeys(pattern.split("/")[0] for pattern in RUN_WRITES)
    return [name for name in names if (run_dir / name).exists() or (run_dir / name).is_symlink()]


def written_by_a_run(run_dir: Path) -> bool:
    """Whether this project wrote ``run_dir``: its run marker, an experiment's ``config.yaml``
    (the sections every resolved config has), or a best checkpoint by our name."""
    marker = read_json(run_dir / MARKER_FILE)
    if isinstance(marker, dict) and marker.get("written_by") == MARKER:
        return True
    try:
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        config = None
    if isinstance(config, dict) and all(isinstance(config.get(section), dict) for section in RUN_SECTIONS):
        return True
    return any(path.is_file() for path in _run_paths(run_dir, (f"{CHECKPOINT_DIR}/best-e*-s*.ckpt",)))


def check_new_run(run_dir: Path, overwrite: bool) -> None:
    """Refuse a new run in ``run_dir`` where it would replace files: another run's unless
    ``overwrite``, and files no run of ours wrote, ever."""
    found = run_files(run_dir)
    if not found:
        return
    names = ", ".join(found)
    if not written_by_a_run(run_dir):
        raise ValueError(f"{run_dir} holds {names}, names a run writes, but no segformer-lab run wrote them (no "
                         f"{MARKER_FILE} or experiment {CONFIG_FILE}): they are not replaced, even with --overwrite;"
                         " choose another directory")
    if overwrite:
        return
    if not (run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT).is_file():
        raise ValueError(f"{run_dir} holds an earlier run that left no checkpoint to resume ({names}): replace it "
                         "with --overwrite, or choose another directory")
    raise ValueError(f"{run_dir} holds an earlier run ({names}): continue it with --resume, replace it with "
                     "--overwrite, or choose another directory")


def remove_run(run_dir: Path) -> None:
    """Delete the files a run writes (``RUN_WRITES``), by name, then its folders that are left
    empty; anything else in the directory, and what links there lead to, stays."""
    for path in _run_paths(run_dir, RUN_WRITES):
        if path.is_file() or path.is_symlink():
            path.unlink()
    for folder in _run_paths(run_dir, RUN_FOLDERS):
        if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
            folder.rmdir()


class StartRun(Callback):
    """What a run writes first, when training starts (after a resumed run's checkpoint is
    restored and the sanity validation passed): with ``replace`` (a new run with
    ``--overwrite``) the earlier run's files go; then the run marker, the resolved config as
    ``config.yaml``, and the loggers are attached (they create ``logs/`` when first used).
    A run that fails before this leaves the directory as it was."""

    def __init__(self, run_dir: Path, config: dict[str, Any], loggers: list[Logger], replace: bool = False) -> None:
        self.run_dir, self.config, self.loggers, self.replace = run_dir, config, loggers, replace
        self.started = False  # whether this process wrote anything into the directory

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            if self.replace:
                remove_run(self.run_dir)
            self.started = True
            if not (self.run_dir / MARKER_FILE).is_file():
                started = time.strftime("%Y-%m-%d %H:%M:%S")
                write_json(self.run_dir / MARKER_FILE, {"written_by": MARKER, "started": started})
            atomic_write(self.run_dir / CONFIG_FILE,
                         lambda p: p.write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8"))
        trainer.loggers = self.loggers
