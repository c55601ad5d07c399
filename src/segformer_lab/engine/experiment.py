"""Experiments: the run that trains a resolved config (``config``: ``DEFAULTS``, a YAML
file, ``key.path=value`` overrides) into a run directory, and ``run_recipe``, the one
reader of a finished run's recipe (``recipe.RunRecipe``: its data, validation
preprocessing and inference settings).

``task`` is ``segmentation`` or ``classification`` (encoder pre-training: an
``ImageClassifier`` over the named model's encoder, ``ClassificationTask``); the rest
of the path (data module, trainer, callbacks, run directory) is the same for both.

A run directory holds ``config.yaml`` (the resolved config, written when training
starts), ``config.json`` and
``model.safetensors`` (the best weights by validation mIoU, or top-1 for classification,
via ``save_pretrained``; the config names the classes and colours as the training
dataset does: ``id2label``, ``palette``, and, for segmentation, carries the validation
``preprocessing``, so that the weights copied out are scored and run as the run is),
``checkpoints/`` (Lightning's ``last.ckpt`` and ``best-*.ckpt``, for resuming) and
``logs/{csv,tensorboard}/version_N/`` (one version per training session; TensorBoard
when installed), ``.segformer-lab-run`` (the marker: a run wrote this directory) and,
while it trains, ``.lock`` (its owner: see ``rundir``, which also says what
``overwrite`` removes).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from ..models import ImageClassifier, SegmentationModel, create_classifier, create_model
from ..models.config import ModelConfig
from ..models.config_checks import ConfigError
from ..models.labels import placeholders
from .callbacks import (
    AtomicCheckpointIO,
    BestCheckpoint,
    LastCheckpoint,
    RestoreDataPosition,
    Throughput,
    TrainingStopped,
)
from .classification import ClassificationTask
from .config import CLASSIFICATION, MONITORS, SEGMENTATION, resolve_config
from .datamodule import SegmentationDataModule
from .module import SegmentationTask
from .optim import OptimConfig
from .recipe import RunRecipe, read_recipe, recipe_preprocessing
from .resume import check_checkpoint, check_resume
from .rundir import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LAST_CHECKPOINT,
    LOGS_DIR,
    StartRun,
    own_run_directory,
    remove_run,
)


class NoAdvertisements(logging.Filter):
    """Drops Lightning's promotional lines ("Tip: ... try installing litlogger / litmodels"),
    which say nothing about the run, from its rank-zero logger; every other line passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().lstrip("💡 ").startswith("Tip:")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(NoAdvertisements())


def build_model(spec: dict[str, Any], pretrained: bool = True,
                task: str = SEGMENTATION) -> SegmentationModel | ImageClassifier:
    """The model a config's ``model`` section describes, with its ``pretrained`` weights
    if any (``pretrained=False``: freshly initialised). For ``classification``, an
    ``ImageClassifier`` over the named model's encoder (``pretrained``: a classifier
    checkpoint)."""
    weights = spec["pretrained"] if pretrained else None
    if task == CLASSIFICATION:
        return create_classifier(spec["name"], num_classes=spec["num_classes"], pretrained=weights,
                                 **spec["overrides"])
    return create_model(spec["name"], num_classes=spec["num_classes"], pretrained=weights,
                        reset_classifier=spec["reset_classifier"], **spec["overrides"])


def with_dataset_classes(model_config: ModelConfig, dataset: Any) -> ModelConfig:
    """``model_config`` naming its classes as ``dataset`` does (its ``classes`` and, when it
    has one, ``palette``), so the run's ``config.json``, best weights and checkpoints carry
    them; unchanged for a dataset that names none (numbered placeholders name none)."""
    names = getattr(dataset, "classes", None)
    if not names or placeholders(names):
        return model_config
    try:
        return model_config.replace(class_names=tuple(names), palette=getattr(dataset, "palette", None))
    except ConfigError as e:
        raise ValueError(f"training dataset {dataset!r}: its classes do not fit the model: {e}") from None


def with_preprocessing(model_config: ModelConfig, config: dict[str, Any], dataset: Any) -> ModelConfig:
    """``model_config`` carrying the run's validation preprocessing (``recipe_preprocessing``)
    and whether ``dataset`` (the training set) reduces the zero label, so that every copy
    of the weights is used as the run validates it."""
    reduce = bool(getattr(dataset, "reduce_zero_label", False))
    return model_config.replace(preprocessing=recipe_preprocessing(config).replace(reduce_zero_label=reduce))


def run_recipe(path: str | os.PathLike) -> RunRecipe | None:
    """The recipe of the segmentation run ``path`` belongs to (a run directory, or a
    ``.ckpt`` in its ``checkpoints/``): its resolved ``config.yaml`` as a ``RunRecipe``; None
    for anything else (a model outside a run, a registered name, a Hub id). A
    classification run (encoder pre-training) is refused: its model does not segment."""
    path = Path(path)
    if not path.exists():  # a registered model's name, a Hub id: not their relative parents
        return None
    run_dir = path if path.is_dir() else path.parent.parent
    where = run_dir / CONFIG_FILE
    if not where.is_file():
        return None
    config = resolve_config(where)
    if config["task"] == CLASSIFICATION:
        raise ValueError(f"{path} belongs to a classification run (encoder pre-training), and its model does not "
                         "segment: its val/top1 and val/top5 are in its logs; fine-tune it with "
                         f"model.pretrained={path}")
    return read_recipe(config, where)


def build_module(config: dict[str, Any], model: SegmentationModel | ImageClassifier) -> L.LightningModule:
    """The LightningModule of the config's task around ``model``."""
    optim = OptimConfig(**config["optim"])
    if config["task"] == CLASSIFICATION:
        return ClassificationTask(model, optim, **config["classification"])
    return SegmentationTask(model, optim, config["val"])


def build_trainer(config: dict[str, Any], run_dir: Path, has_val: bool = True, replace: bool = False,
                  **trainer_overrides: Any) -> L.Trainer:
    """A Trainer for ``config["trainer"]`` writing into ``run_dir``, with the run's
    checkpoints (best by the task's score, mIoU or top-1, mirrored to ``run_dir`` as
    weights; last), throughput and learning-rate logging, and, once training starts
    (``StartRun``), the earlier run's files removed (``replace``), the run marker, the
    config (a resumed run's, after the config's optimiser settings are put over the
    restored ones) and the loggers."""
    checkpoints = run_dir / CHECKPOINT_DIR
    best = BestCheckpoint(run_dir, dirpath=checkpoints, filename=BEST_CHECKPOINT,
                          auto_insert_metric_name=False, monitor=MONITORS[config["task"]], mode="max", save_top_k=1)
    loggers = [CSVLogger(run_dir / LOGS_DIR, name="csv")]  # a new version_N per (resumed) session
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(run_dir / LOGS_DIR, name="tensorboard"))
    callbacks = [
        StartRun(run_dir, config, loggers, replace),  # first: the loggers are there for the others' on_train_start
        *([best] if has_val else []),
        LastCheckpoint(checkpoints / LAST_CHECKPOINT, config["checkpoint"]["every_n_train_steps"]),
        RestoreDataPosition(),
        Throughput(),
        LearningRateMonitor(logging_interval="step"),
    ]
    kwargs = {**config["trainer"], **({} if has_val else {"limit_val_batches": 0}), **trainer_overrides}
    try:
        return L.Trainer(default_root_dir=run_dir, callbacks=callbacks, logger=False, plugins=[AtomicCheckpointIO()],
                         use_distributed_sampler=False, **kwargs)
    except MisconfigurationException as e:  # e.g. accelerator gpu on a machine without one
        settings = ", ".join(f"{key}={kwargs.get(key, 'auto')!r}" for key in ("accelerator", "devices", "strategy"))
        raise ValueError(f"trainer ({settings}): Lightning cannot run it here: {e}") from None


def train(config: dict[str, Any], run_dir: str | os.PathLike, resume: bool = False,
          datamodule: SegmentationDataModule | None = None, overwrite: bool = False,
          **trainer_overrides: Any) -> L.Trainer:
    """Train a resolved ``config`` into ``run_dir`` (``resume``: continue from its
    ``last.ckpt``, restoring weights, optimiser, schedule, step, data position and random
    state; ``overwrite``: replace an earlier run's files there, when training starts).
    ``datamodule`` replaces the one the ``data`` section describes.

    Nothing is written before the run's directory is owned (``rundir``) and, on resume,
    the config is checked against the run's (``resume.check_resume``) and its checkpoint;
    nothing but the lock before training starts (``rundir.StartRun``). A new run that
    stops before its first step removes what it wrote. SIGTERM stops the run at the end of
    an optimiser step, with ``last.ckpt`` written: ``TrainingStopped``."""
    run_dir = Path(run_dir)
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if resume:
        if not last.is_file():
            raise FileNotFoundError(f"nothing to resume: {last} does not exist")
        if (run_dir / CONFIG_FILE).is_file():
            check_resume(resolve_config(run_dir / CONFIG_FILE), config, run_dir / CONFIG_FILE)
    segmentation = config["task"] != CLASSIFICATION
    if segmentation:
        recipe_preprocessing(config)  # a validation pipeline no consumer can repeat is refused up front
    L.seed_everything(config["seed"], workers=True, verbose=False)
    datamodule = datamodule or SegmentationDataModule.from_config(config["data"], config["seed"],
                                                                  config["model"]["num_classes"])
    trainer = build_trainer(config, run_dir, has_val=datamodule.val is not None, replace=overwrite and not resume,
                            **trainer_overrides)
    start = next(c for c in trainer.callbacks if isinstance(c, StartRun))
    # under DDP, global rank 0 owns the directory for its run; the other ranks write nothing there
    with own_run_directory(run_dir, resume, overwrite) if trainer.is_global_zero else contextlib.nullcontext():
        model = build_model(config["model"], pretrained=not resume, task=config["task"])  # resuming restores them
        model.config = with_dataset_classes(model.config, datamodule.train)
        if segmentation:
            model.config = with_preprocessing(model.config, config, datamodule.train)
        if resume:
            check_checkpoint(last, model.pretrained_config())
        try:
            trainer.fit(build_module(config, model), datamodule=datamodule, ckpt_path=last if resume else None,
                        weights_only=True)
        except BaseException as err:
            kept = resume or trainer.global_step > 0
            if start.started and not kept:  # a start that trained nothing leaves nothing: it can run again
                remove_run(run_dir)
            if isinstance(err, SIGTERMException):
                raise TrainingStopped(_stopped(trainer, run_dir, kept)) from None
            raise
        if datamodule.val is None and trainer.is_global_zero:  # no best to mirror: keep the final weights
            model.save_pretrained(run_dir)
    return trainer


def _stopped(trainer: L.Trainer, run_dir: Path, kept: bool) -> str:
    """Where a run stopped by SIGTERM is and how to go on (``kept``: it was resumed or trained a step)."""
    if not kept:
        return ("stopped by SIGTERM before the first training step; nothing of the run was kept: run the same "
                "command again")
    last = next(c for c in trainer.callbacks if isinstance(c, LastCheckpoint))
    saved, at = last.saved_step(), f"stopped by SIGTERM at step {trainer.global_step}"
    if saved is None:  # during a validation, before any checkpoint
        return f"{at}, before any checkpoint was written: {run_dir} cannot be resumed; start it again with --overwrite"
    return f"{at}; the run in {run_dir} is saved at step {saved} ({last.path}): continue it with " \
           f"segformer-lab train --resume {run_dir}"
