"""Safe reading: a checkpoint path -> its tensors under their original names, its key
format and the config that describes it (read -> unwrap -> detect).

Sources, recognised from the files themselves:

- this project's directory: ``config.json`` with ``"format": "segformer_lab"`` (and
  ``"task": "classification"`` for an ``ImageClassifier``) and ``model.safetensors``;
- a Hugging Face directory: ``config.json`` with ``"model_type": "segformer"`` and
  ``model.safetensors`` or ``pytorch_model.bin``; the SegFormer-with-RoPE seed's, with
  ``"model_type": "segformer-with-rope"`` (``rope_seed``);
- a training run's Lightning ``.ckpt``: ``state_dict`` with the ``model.`` prefix, and
  this project's config under ``MODEL_CONFIG_KEY``;
- a bare weights file (``.safetensors``, ``.bin``, ``.pth``, ``.pt``, ``.ckpt``), optionally
  wrapped in ``{"state_dict": ...}`` or ``{"model": ...}``, its key format detected;
- a Hugging Face Hub model id, ``owner/name[@revision]``, that is not a local path: its
  snapshot in huggingface_hub's cache (``models.hub.resolve_checkpoint``), read as a directory.

Pickled files are opened only with ``torch.load(weights_only=True)``: a file that needs
anything beyond tensors and plain containers is refused, and nothing in it runs.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..hub import HF_WEIGHTS_NAMES, resolve_checkpoint
from ..pretrained import (
    CLASSIFICATION,
    CONFIG_NAME,
    MODEL_CONFIG_KEY,
    PREPROCESSOR_NAME,
    CheckpointError,
    own_config,
    read_config,
    read_safetensors,
)
from . import rope_original
from .formats import KEY_FORMATS, OWN_CLASSIFIER_FORMAT, OWN_FORMAT, KeyFormat, rope_original_format

PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
WRAPPER_KEYS = ("state_dict", "model")
WRAPPER_PREFIXES = ("module.", "model.")  # DistributedDataParallel, a Lightning module's ``self.model``
LIGHTNING_VERSION_KEY = "pytorch-lightning_version"  # in every checkpoint Lightning writes

log = logging.getLogger("segformer_lab")


@dataclass
class Source:
    """A checkpoint as read from disk: its tensors under their original names, the key
    format, the config that describes it (ours, from ``config.json`` or a Lightning
    checkpoint, or Hugging Face's), if any, and whether Lightning wrote it."""

    path: Path
    state: dict[str, torch.Tensor]
    format: KeyFormat
    own_config: dict[str, Any] | None = None
    hf_config: dict[str, Any] | None = None
    image_processor: dict[str, Any] | None = None
    lightning: bool = False
    notes: list[str] = field(default_factory=list)


def read(path: str | os.PathLike) -> Source:
    """The checkpoint at ``path`` (a Hub id: its cached snapshot), read, unwrapped, detected."""
    path = resolve_checkpoint(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        config, where = read_config(path), path / CONFIG_NAME
        found = [path / name for name in HF_WEIGHTS_NAMES if (path / name).is_file()]
        if not found:
            raise CheckpointError(f"{path} holds no weights: expected one of {', '.join(HF_WEIGHTS_NAMES)}")
        weights = found[0]
        obj = read_weights(weights)
        if len(found) > 1:
            report_other_weights(weights, obj, found[1])
    else:
        weights, obj = path, read_weights(path)
        # a training run's Lightning checkpoint describes its model (engine's on_save_checkpoint)
        config = obj.pop(MODEL_CONFIG_KEY, None) if isinstance(obj, dict) else None
        where = f"{path} [{MODEL_CONFIG_KEY!r}]"
    lightning = isinstance(obj, dict) and LIGHTNING_VERSION_KEY in obj
    state, notes = unwrap(obj, weights)
    source = Source(path=path, state=state, format=OWN_FORMAT, lightning=lightning, notes=notes)
    if path.is_dir():
        source.image_processor = read_config(path, PREPROCESSOR_NAME)
    own = own_config(config, where)
    if own is not None:
        # Our own keys are never sniffed: a later model family may use names that look
        # like another format's.
        task, source.own_config = own
        source.format = OWN_CLASSIFIER_FORMAT if task == CLASSIFICATION else OWN_FORMAT
    elif config is None:
        source.format = detect(state)
    elif path.is_dir() and config.get("model_type") == "segformer":
        source.hf_config = config
        source.format = detect(state)
    elif path.is_dir() and config.get("model_type") == rope_original.MODEL_TYPE:
        source.hf_config = config
        source.format = rope_original_format(rope_original.config_heads(config))
    else:
        raise CheckpointError(
            f"{where} describes neither a segformer_lab model nor a Hugging Face SegFormer "
            f"(format {config.get('format')!r}, model_type {config.get('model_type')!r})"
        )
    return source


def report_other_weights(used: Path, state: dict[str, torch.Tensor], other: Path) -> None:
    """A directory with both weights files: say which one is read when the other differs
    (or cannot be read)."""
    try:
        theirs = read_weights(other)
    except CheckpointError as e:
        log.warning("%s: reading %s; %s is ignored, and unreadable: %s", used.parent, used.name, other.name, e)
        return
    same = isinstance(theirs, dict) and theirs.keys() == state.keys() and all(
        isinstance(theirs[k], torch.Tensor) and theirs[k].dtype == state[k].dtype
        and theirs[k].shape == state[k].shape and torch.equal(theirs[k], state[k]) for k in state)
    if not same:
        log.warning("%s: %s and %s differ; reading %s (delete the other to silence this)",
                    used.parent, used.name, other.name, used.name)


def read_weights(file: Path, mmap: bool = False) -> Any:
    """Safetensors, or a pickle restricted to tensors and plain containers. ``mmap``: a
    pickle's tensors are mapped, not read (for a look at a checkpoint's other entries)."""
    suffix = file.suffix.lower()
    if suffix == ".safetensors":
        return read_safetensors(file)
    if suffix in PICKLE_SUFFIXES:
        try:
            return torch.load(file, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"refusing to load {file}: it needs unsafe unpickling ({unpickling_reason(e)}), which can run "
                "arbitrary code. Only tensors and plain containers are accepted; if you trust the file, re-save "
                "its state dict as safetensors."
            ) from None
        except Exception as e:  # torch reports a damaged archive as RuntimeError, EOFError, KeyError ...
            raise CheckpointError(f"{file} could not be read (truncated or corrupt?): {e}") from e
    raise CheckpointError(
        f"{file}: unsupported weights file type {suffix!r}; expected .safetensors, {', '.join(PICKLE_SUFFIXES)}"
    )


def unpickling_reason(error: Exception) -> str:
    """The line of torch's long weights-only message that names what was refused."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    reason = next((ln for ln in lines if "global" in ln.lower() or "unsupported" in ln.lower()), "")
    reason = reason.split(". ")[0].removeprefix("WeightsUnpickler error: ")  # not torch's advice that follows
    return reason[:200] or "not a plain tensor file"


def unwrap(obj: Any, file: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The state dict inside a loaded checkpoint, plus notes on what was set aside."""
    notes = []
    if isinstance(obj, dict):
        for wrapper in WRAPPER_KEYS:
            inner = obj.get(wrapper)
            if isinstance(inner, dict) and any(isinstance(v, torch.Tensor) for v in inner.values()):
                others = sorted(str(k) for k in obj if k != wrapper)
                if others:
                    notes.append(f"ignored top-level entries {others} (training state and metadata, not weights)")
                obj = inner
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{file} holds no state dict: expected a mapping of names to tensors, "
            f"possibly under {' or '.join(repr(k) for k in WRAPPER_KEYS)}"
        )
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(state) < len(obj):
        notes.append(f"ignored non-tensor entries {sorted(str(k) for k in obj if k not in state)}")
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
            notes.append(f"stripped the {prefix!r} prefix shared by every key")
    return state, notes


def detect(state: dict[str, torch.Tensor]) -> KeyFormat:
    """The first of ``KEY_FORMATS`` whose signature matches a key; else ours."""
    for key_format in KEY_FORMATS:
        signature = re.compile(key_format.signature)
        if any(signature.search(k) for k in state):
            return key_format
    return OWN_FORMAT
