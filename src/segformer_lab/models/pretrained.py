"""This project's on-disk format, and ``PretrainedMixin`` (``save_pretrained`` /
``from_pretrained``) for the model classes above it.

A directory holds ``config.json`` (``{"format": "segformer_lab", ["task": task,]
**config.to_dict()}``; no task is a segmentation model) and ``model.safetensors`` (the
state dict), each written atomically. ``from_pretrained`` reads exactly that, as
huggingface_hub's ``ModelHubMixin`` does; every other format (Hugging Face, NVlabs/mmseg,
bare weights, Lightning ``.ckpt``) is ``segformer_lab.load_model``'s (``models.checkpoint``).
A Lightning checkpoint of a training run carries the same config dict under
``MODEL_CONFIG_KEY`` (added by the engine's modules), so it describes its model too.

``CheckpointError`` lives here, at the bottom of the checkpoint code, so that this module
and ``models.checkpoint`` raise the same error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from .._io import atomic_write
from .config import ModelConfig
from .config_checks import ConfigError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_TAG = "segformer_lab"  # config.json's "format"
CLASSIFICATION = "classification"  # config.json's "task" for an ImageClassifier; segmentation has none
PREPROCESSOR_NAME = "preprocessor_config.json"  # transformers' image processor (optional)
HF_PREPROCESSING_KEY = "segformer_lab_preprocessing"  # our whole preprocessing in a transformers config.json
MODEL_CONFIG_KEY = "model_config"  # the config.json dict inside a training run's Lightning checkpoint

Model = TypeVar("Model", bound="PretrainedMixin")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely, or that does not fit the model."""


def task_name(task: str | None) -> str:
    return task or "segmentation"


def read_config(directory: Path, name: str = CONFIG_NAME) -> dict[str, Any] | None:
    """The ``config.json`` (or another JSON file ``name``, e.g. transformers'
    ``preprocessor_config.json``) of ``directory`` (any project's), or None if it has none."""
    config_file = directory / name
    if not config_file.is_file():
        return None
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_file} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_file}: the top level must be a JSON object of config fields, got "
                              f"{type(config).__name__}")
    return config


def own_config(config: Any, where: Path | str) -> tuple[str | None, dict[str, Any]] | None:
    """``(task, ModelConfig dict)`` if ``config`` is this project's config dict, else None;
    an unknown task is a ``CheckpointError`` naming ``where``."""
    if not isinstance(config, dict) or config.get("format") != FORMAT_TAG:
        return None
    task = config.get("task")
    if task not in (None, CLASSIFICATION):
        raise CheckpointError(f"{where}: unknown task {task!r} (segmentation has none, or {CLASSIFICATION!r})")
    return task, {k: v for k, v in config.items() if k not in ("format", "task")}


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, on the CPU."""
    try:
        return load_file(str(file), device="cpu")
    except Exception as e:  # safetensors raises its own error type, or OSError
        raise CheckpointError(f"{file} could not be read (truncated or corrupt?): {e}") from e


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for a module built as ``cls(config)`` from a
    ``ModelConfig`` held in ``self.config``; ``task`` is its config.json ``"task"``."""

    task: str | None = None
    config: ModelConfig

    def pretrained_config(self) -> dict[str, Any]:
        """What ``config.json`` holds: plain JSON types (``torch.load(weights_only=True)``
        reads it back from a Lightning checkpoint too)."""
        return {"format": FORMAT_TAG, **({"task": self.task} if self.task else {}), **self.config.to_dict()}

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``, atomically."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
        config = json.dumps(self.pretrained_config(), indent=2)
        atomic_write(directory / CONFIG_NAME, lambda p: p.write_text(config))
        return directory

    @classmethod
    def from_pretrained(cls: type[Model], directory: str | os.PathLike) -> Model:
        """The model a ``save_pretrained`` directory holds, bit for bit; in eval mode.

        Anything else is a ``CheckpointError`` naming the file: ``segformer_lab.load_model``
        reads the other formats."""
        directory = Path(directory)
        if not directory.exists():
            raise FileNotFoundError(f"no checkpoint at {directory}")
        config_file = directory / CONFIG_NAME
        config = read_config(directory) if directory.is_dir() else None
        own = own_config(config, config_file)
        if own is None or not (directory / WEIGHTS_NAME).is_file():
            where = config_file if config is not None else directory
            raise CheckpointError(
                f"{where}: not a {cls.__name__} directory written by save_pretrained ({CONFIG_NAME} with "
                f'"format": "{FORMAT_TAG}" and {WEIGHTS_NAME}); from_pretrained reads only that, use '
                "segformer_lab.load_model for other formats (Hugging Face, NVlabs/mmseg, weights files, .ckpt)"
            )
        task, fields = own
        if task != cls.task:
            raise CheckpointError(
                f"{config_file}: a segformer-lab {task_name(task)} model, not a {task_name(cls.task)} one "
                f"({cls.__name__}); segformer_lab.load_model takes its encoder into a segmentation model"
            )
        try:
            model = cls(ModelConfig.from_dict(fields))
        except ConfigError as e:
            raise CheckpointError(f"{config_file}: {e}") from None
        state = read_safetensors(directory / WEIGHTS_NAME)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{directory / WEIGHTS_NAME} does not fit its {CONFIG_NAME}: {e}") from None
        return model.eval()
