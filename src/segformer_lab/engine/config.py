"""The experiment config: ``DEFAULTS``, a YAML file over them, ``key.path=value``
overrides, and the checks that turn a mistake into one line naming the key (unknown keys,
value types, Lightning Trainer arguments, dataset options, transform parameters).
``experiment`` trains what it describes."""

from __future__ import annotations

import copy
import inspect
import os
import re
from pathlib import Path
from typing import Any, Sequence

import lightning.pytorch as L
import yaml

from ..data import DATASETS, PIPELINES, read_text
from ..models.config import DEFAULT_NUM_CLASSES
from ..models.config_checks import check_types, describe, field_types, fits
from .optim import OptimConfig

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
# Trainer arguments build_trainer sets itself; the rest of the signature is what ``trainer`` takes.
RESERVED = {"self", "default_root_dir", "callbacks", "logger", "plugins", "use_distributed_sampler"}
SIZES = {("val", "crop"), ("val", "stride")}  # a number or [height, width]
TRAINER_ARGS = {name: p.annotation for name, p in inspect.signature(L.Trainer.__init__).parameters.items()
                if name not in RESERVED}


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
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ValueError(f"override {text!r}: the value is not valid YAML ({e.problem})") from None
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
    """``DEFAULTS`` updated by a YAML file (or dict), then by each override in order, and
    validated (``validate_config``). Unknown keys are errors, except inside the open
    sections (``trainer`` keys are checked against Lightning's Trainer)."""
    if not isinstance(config, dict):
        config = read_yaml(Path(config))
    resolved = _merge(DEFAULTS, config)
    for text in overrides:
        resolved = _merge(resolved, parse_override(text))
    resolved = _numbers(resolved)
    validate_config(resolved)
    return resolved


def read_yaml(path: Path) -> dict[str, Any]:
    """The experiment in a YAML file: a mapping of sections (an empty file: none); a file
    that is not UTF-8, not valid YAML or not a mapping is a ``ValueError`` naming it."""
    text = read_text(path)
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{path}: not valid YAML{where} ({getattr(e, 'problem', None) or e})") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: an experiment is a mapping of sections (model, data, optim, trainer...), got a "
                         f"{type(config).__name__}")
    return config


def validate_config(config: dict[str, Any]) -> None:
    """Value types: a key of a checked section takes its default's type (numbers: int or
    float; a default of None: anything), a ``trainer`` key must be an argument of
    Lightning's Trainer and fit its annotation."""
    if config["task"] not in MONITORS:
        raise ValueError(f"unknown task {config['task']!r}; choose one of {sorted(MONITORS)}")
    _check_types(DEFAULTS, config)
    check_types(field_types(OptimConfig), config["optim"], "optim")  # betas: [beta1, beta2]
    _check_data(config["data"])
    for key, value in config["trainer"].items():
        if key not in TRAINER_ARGS:
            raise ValueError(f"unknown config key 'trainer.{key}': not a Lightning Trainer argument; known: "
                             f"{sorted(TRAINER_ARGS)}")
        if not fits(value, TRAINER_ARGS[key]):
            raise ValueError(f"trainer.{key} must be {describe(TRAINER_ARGS[key])}, got {value!r}")


def _check_data(data: dict[str, Any]) -> None:
    """The open ``data`` sections up front: ``options`` are keywords of the format's dataset
    class, each transforms section names a pipeline (``PIPELINES``) and its parameters."""
    if data["format"] not in DATASETS:
        raise ValueError(f"data.format: unknown dataset format {data['format']!r}; choose from {sorted(DATASETS)}")
    _check_keywords("data.options", DATASETS[data["format"]].__init__, data["options"],
                    set_by_engine=("self", "root", "split", "transforms", "num_classes", "skip_bad"))
    for section in ("train_transforms", "val_transforms"):
        params = dict(data[section])
        name = params.pop("name", None)
        if name not in PIPELINES:
            raise ValueError(f"data.{section}.name: unknown transforms {name!r}; choose from {sorted(PIPELINES)}")
        if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(PIPELINES[name]).parameters.values()):
            try:  # it takes any keys and checks them itself ('val': a Preprocessing's)
                PIPELINES[name](**params)
            except ValueError as err:
                raise ValueError(f"data.{section}: {str(err).removeprefix(f'{name} transforms: ')}") from None
        else:
            _check_keywords(f"data.{section}", PIPELINES[name], params)


def _check_keywords(where: str, function: Any, given: dict[str, Any], set_by_engine: Sequence[str] = ()) -> None:
    """Every key of ``given`` must be a keyword ``function`` takes (other than those the
    engine passes itself)."""
    known = sorted(set(inspect.signature(function).parameters) - set(set_by_engine))
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"unknown config key '{where}.{unknown[0]}'; known here: {known}")


def _check_types(defaults: dict[str, Any], config: dict[str, Any], path: tuple[str, ...] = ()) -> None:
    for key, default in defaults.items():
        where, value = (*path, key), config[key]
        name = ".".join(where)
        if where in OPEN or default is None:
            continue
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ValueError(f"{name} must be a mapping of keys, got {value!r}")
            _check_types(default, value, where)
            continue
        number = isinstance(default, (int, float)) and not isinstance(default, bool)
        if where in SIZES and isinstance(value, list):
            ok = len(value) == 2 and all(fits(v, float) for v in value)
        else:
            ok = fits(value, float if number else type(default))
        if not ok:
            expected = ("a number" + (" or [height, width]" if where in SIZES else "")) if number else \
                type(default).__name__
            raise ValueError(f"{name} must be {expected}, got {value!r}")
