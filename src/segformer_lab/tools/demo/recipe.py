"""The demo's recipe: the packaged ``demo.yaml`` resolved over the engine's defaults, the
part of it that identifies a run, and the training steps the plan sets in it."""

from __future__ import annotations

import copy
import importlib.resources
import os
from typing import Any, Sequence

import torch
import yaml

from ...engine import resolve_config

# the one copy of the recipe, shipped as package data (pyproject.toml)
RECIPE = importlib.resources.files(__package__) / "demo.yaml"
VAL_POINTS = 2  # validations during training (the curve): halfway and at the end
# config keys that do not change what a run computes (a moved cache, the console)
NEUTRAL = (("data", "root"), ("data", "num_workers"), ("trainer", "enable_progress_bar"))


def load_recipe(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The recipe ``path`` (default: the packaged ``demo.yaml``) resolved over the engine's
    defaults, then ``overrides`` (``key.path=value``)."""
    if path is None:
        return resolve_config(yaml.safe_load(RECIPE.read_text(encoding="utf-8")) or {}, overrides)
    return resolve_config(path, overrides)


def recipe_key(config: dict[str, Any]) -> dict[str, Any]:
    """The config without the keys that do not change a run's result."""
    key = copy.deepcopy(config)
    for section, name in NEUTRAL:
        key.get(section, {}).pop(name, None)
    return key


def set_steps(config: dict[str, Any], steps: int, val_points: int = VAL_POINTS) -> dict[str, Any]:
    """``steps`` optimiser steps, validated ``val_points`` times, evenly (the demo's two:
    halfway and at the end), or never (0: a study scores its runs' final weights itself)."""
    config = copy.deepcopy(config)
    if val_points == 0:
        config["trainer"].update(max_steps=steps, max_epochs=-1, limit_val_batches=0, num_sanity_val_steps=0)
        return config
    steps = max(val_points, steps - steps % val_points)
    config["trainer"].update(max_steps=steps, max_epochs=-1, check_val_every_n_epoch=None,
                             val_check_interval=steps // val_points)
    return config


def device_of(config: dict[str, Any]) -> str:
    """Where the recipe's runs compute: ``cuda`` when its accelerator allows and one is
    present, else ``cpu``."""
    accelerator = str(config["trainer"].get("accelerator", "auto"))
    if accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"
