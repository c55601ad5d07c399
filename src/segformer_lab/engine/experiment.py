"""Experiments: a YAML config over ``DEFAULTS``, resolved with ``key.path=value``
overrides, and the run that trains it into a run directory.

``task`` is ``segmentation`` or ``classification`` (encoder pre-training: an
``ImageClassifier`` over the named model's encoder, ``ClassificationModule``); the rest
of the path (data module, trainer, callbacks, run directory) is the same for both.

A run directory holds ``config.yaml`` (the resolved config), ``config.json`` and
``model.safetensors`` (the best weights by validation mIoU, or top-1 for classification,
via ``save_pretrained``),
``checkpoints/`` (Lightning's ``last.ckpt`` and ``best-*.ckpt``, for resuming) and
``logs/{csv,tensorboard}/version_N/`` (one version per training session; TensorBoard
when installed).
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as L
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from ..models import ImageClassifier, SegmentationModel, create_classifier, create_model
from ..models.config import DEFAULT_NUM_CLASSES
from .._io import atomic_write
from .callbacks import AtomicCheckpointIO, BestCheckpoint, LastCheckpoint, RestoreDataPosition, Throughput
from .classification import ClassificationModule
from .datamodule import SegmentationDataModule
from .module import SegmentationModule
from .optim import OptimConfig

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
SEGMENTATION, CLASSIFICATION = "segmentation", "classification"
MONITORS = {SEGMENTATION: "val/mIoU", CLASSIFICATION: "val/top1"}  # what the best checkpoint maximises
SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "task": SEGMENTATION,
    "model": {"name": "segformer_b0", "num_classes": DEFAULT_NUM_CLASSES, "pretrained": None, "reset_classifier": False,
              "overrides": {}},
    "data": {"format": "ade20k", "root": None, "train_split": "training", "val_split": "validation",
             "train_transforms": {"name": "segformer_ade"}, "val_transforms": {"name": "val"},
             "batch_size": 16, "val_batch_size": 1, "num_workers": 4, "skip_bad": False, "options": {}},
    "optim": {"lr": 6e-5, "weight_decay": 0.01, "betas": [0.9, 0.999], "eps": 1e-8, "head_lr_mult": 10.0,
              "warmup": 1500, "poly_power": 1.0, "schedule": "poly", "min_lr_ratio": 0.0},
    "val": {"mode": "whole", "crop": 512, "stride": 341, "scales": [1.0], "flip": False},
    "classification": {"label_smoothing": 0.0},
    "checkpoint": {"every_n_train_steps": None},
    "trainer": {"precision": "32", "accumulate_grad_batches": 1,
                "gradient_clip_val": None, "accelerator": "auto", "devices": "auto", "num_nodes": 1,
                "strategy": "auto", "log_every_n_steps": 50},
}
# Sections whose keys are not checked: any Lightning Trainer argument, create_model
# overrides, dataset options, transform parameters. A transforms section that names
# another pipeline replaces the previous one (its parameters would not apply).
TRANSFORMS = {("data", "train_transforms"), ("data", "val_transforms")}
OPEN = {("trainer",), ("model", "overrides"), ("data", "options"), *TRANSFORMS}


def _merge(base: dict[str, Any], update: dict[str, Any], path: tuple[str, ...] = ()) -> dict[str, Any]:
    if path in TRANSFORMS and update.get("name", base["name"]) != base["name"]:
        return copy.deepcopy(update)
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = (*path, key)
        if key not in base and path not in OPEN:
            raise ValueError(f"unknown config key {'.'.join(where)!r}; known here: {sorted(base)}")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = _merge(base[key], value, where)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.lr=1e-3"`` -> ``{"optim": {"lr": 0.001}}``; the value is read as YAML
    (``[64, 64]``, ``null``, ``true``; a plain word stays a string)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r} is not of the form key.path=value")
    parsed = yaml.safe_load(value)
    for part in reversed(key.strip().split(".")):
        parsed = {part: parsed}
    return parsed


def _numbers(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads ``6e-5`` as a string; recipes mean a number."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str) and SCIENTIFIC.fullmatch(value):
        return float(value)
    return value


def resolve_config(config: str | os.PathLike | dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """``DEFAULTS`` updated by a YAML file (or dict), then by each override in order.
    Unknown keys are errors, except inside the open sections."""
    if not isinstance(config, dict):
        config = yaml.safe_load(Path(config).read_text()) or {}
    resolved = _merge(DEFAULTS, config)
    for text in overrides:
        resolved = _merge(resolved, parse_override(text))
    if resolved["task"] not in MONITORS:
        raise ValueError(f"unknown task {resolved['task']!r}; choose one of {sorted(MONITORS)}")
    return _numbers(resolved)


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


def build_module(config: dict[str, Any], model: SegmentationModel | ImageClassifier) -> L.LightningModule:
    """The LightningModule of the config's task around ``model``."""
    optim = OptimConfig(**config["optim"])
    if config["task"] == CLASSIFICATION:
        return ClassificationModule(model, optim, **config["classification"])
    return SegmentationModule(model, optim, config["val"])


def build_trainer(config: dict[str, Any], run_dir: Path, has_val: bool = True, **trainer_overrides: Any) -> L.Trainer:
    """A Trainer for ``config["trainer"]`` writing into ``run_dir``, with the run's
    checkpoints (best by the task's score, mIoU or top-1, mirrored to ``run_dir`` as
    weights; last), loggers, throughput and learning-rate logging."""
    checkpoints = run_dir / CHECKPOINT_DIR
    best = BestCheckpoint(run_dir, dirpath=checkpoints, filename="best-e{epoch:03d}-s{step:06d}",
                          auto_insert_metric_name=False, monitor=MONITORS[config["task"]], mode="max", save_top_k=1)
    callbacks = [
        *([best] if has_val else []),
        LastCheckpoint(checkpoints / LAST_CHECKPOINT, config["checkpoint"]["every_n_train_steps"]),
        RestoreDataPosition(),
        Throughput(),
        LearningRateMonitor(logging_interval="step"),
    ]
    loggers = [CSVLogger(run_dir / "logs", name="csv")]  # a new version_N per (resumed) session
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(run_dir / "logs", name="tensorboard"))
    kwargs = {**config["trainer"], **({} if has_val else {"limit_val_batches": 0}), **trainer_overrides}
    return L.Trainer(default_root_dir=run_dir, callbacks=callbacks, logger=loggers, plugins=[AtomicCheckpointIO()],
                     use_distributed_sampler=False, **kwargs)


def train(config: dict[str, Any], run_dir: str | os.PathLike, resume: bool = False,
          datamodule: SegmentationDataModule | None = None, **trainer_overrides: Any) -> L.Trainer:
    """Train a resolved ``config`` into ``run_dir`` (``resume``: continue from its
    ``last.ckpt``, restoring weights, optimiser, schedule, step, data position and random
    state). ``datamodule`` replaces the one the ``data`` section describes."""
    run_dir = Path(run_dir)
    last = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    if resume and not last.is_file():
        raise FileNotFoundError(f"nothing to resume: {last} does not exist")
    if not resume and (run_dir / CHECKPOINT_DIR).is_dir() and any((run_dir / CHECKPOINT_DIR).iterdir()):
        raise ValueError(f"{run_dir} already holds checkpoints: resume it (--resume) or choose another run directory")
    L.seed_everything(config["seed"], workers=True, verbose=False)
    datamodule = datamodule or SegmentationDataModule.from_config(config["data"], config["seed"],
                                                                  config["model"]["num_classes"])
    model = build_model(config["model"], pretrained=not resume, task=config["task"])  # resuming restores them
    module = build_module(config, model)
    trainer = build_trainer(config, run_dir, has_val=datamodule.val is not None, **trainer_overrides)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / CONFIG_FILE, lambda p: p.write_text(yaml.safe_dump(config, sort_keys=False)))
    trainer.fit(module, datamodule=datamodule, ckpt_path=last if resume else None, weights_only=True)
    if datamodule.val is None and trainer.is_global_zero:  # no best to mirror: keep the final weights
        model.save_pretrained(run_dir)
    return trainer
