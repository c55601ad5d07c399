"""Reading checkpoints of every supported format, and the export to Hugging Face.

Sources, recognised from the files themselves:

- this project's directory: ``config.json`` with ``"format": "segformer_lab"`` and
  ``model.safetensors`` (restored bit for bit); with ``"task": "classification"`` an
  ``ImageClassifier`` (encoder pre-training), whose encoder initialises a segmentation
  model (its ``classifier.*`` ignored, a fresh decode head) or which
  ``load_classifier`` restores as a classifier;
- a Hugging Face directory: ``config.json`` with ``"model_type": "segformer"`` and
  ``model.safetensors`` or ``pytorch_model.bin``, of ``SegformerForSemanticSegmentation``
  or of the encoder-only ``SegformerForImageClassification`` (``nvidia/mit-b*``);
- a bare weights file (``.safetensors``, ``.bin``, ``.pth``, ``.pt``, ``.ckpt``).

Key spellings accepted: ours (a segmentation model or an ``ImageClassifier``); the Hub's
(``segformer.encoder.*``, ``decode_head.linear_c.N`` or ``decode_head.linear_projections.N``);
transformers 5's in-memory names (``segformer.stages.N.blocks.M.attention.q_proj`` ...); the
original NVlabs/mmseg ones (``backbone.block1.0.attn.kv`` ..., with or without ``backbone.``),
optionally wrapped in ``{"state_dict": ...}`` or ``{"model": ...}``.

Every source goes through one pipeline: read -> unwrap -> detect -> rename -> compare.
Pickled files are opened only with ``torch.load(weights_only=True)``: a file that needs
anything beyond tensors and plain containers is refused, and nothing in it runs.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import pickle
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .classifier import TASK as CLASSIFICATION
from .classifier import ImageClassifier
from .config import DecoderConfig, ModelConfig, StageConfig
from .registry import get_config, list_models
from .segmentor import CONFIG_NAME, FORMAT_TAG, WEIGHTS_NAME, SegmentationModel

log = logging.getLogger("segformer_lab")

HF_PREFIX = "segformer."
HF_WEIGHTS_NAMES = (WEIGHTS_NAME, "pytorch_model.bin")
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")
DEFAULT_NUM_CLASSES = 150  # ADE20K; the class count given to heads of encoder-only checkpoints
MIT_HEADS = (1, 2, 5, 8)  # attention heads of every MiT variant; no weight stores them
WRAPPER_KEYS = ("state_dict", "model")
WRAPPER_PREFIXES = ("module.", "model.")  # DistributedDataParallel, a Lightning module's ``self.model``
MAX_LISTED = 5
# What an encoder-only checkpoint leaves at its initialisation in a segmentation model:
# the decode head, and the input resizer (which starts as plain bilinear resizing).
OUTSIDE_ENCODER = ("decode_head.", "input_resizer.")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely, or that does not fit the model."""


@dataclass
class LoadReport:
    """What ``load_weights`` did.

    ``missing``: model keys absent from the checkpoint, left at their initialisation;
    ``unused``: checkpoint keys the model has no place for (an ImageNet classifier ...);
    ``reinitialised``: checkpoint keys deliberately not loaded (``reset_classifier``).
    Only explained cases end up here; anything else is a ``CheckpointError``.
    """

    path: str
    format: str
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# --- key formats ----------------------------------------------------------------------
Rename = tuple[str, str | Callable[[re.Match[str]], str]]


def _zero_based(m: re.Match[str]) -> str:
    """``block1.`` -> ``block.0.``: NVlabs numbers stages from 1, we from 0."""
    return f"{m['name']}.{int(m['index']) - 1}."


@dataclass(frozen=True)
class KeyFormat:
    """A spelling of SegFormer's state dict: how to recognise it (``signature``, matched
    against any key), how to turn its keys into ours (``renames``, ``re.sub`` rules
    applied in order to every key) and which of its keys have no counterpart in a
    segmentation model (``ignored``: pattern -> reason)."""

    name: str
    signature: str
    renames: tuple[Rename, ...] = ()
    ignored: tuple[tuple[str, str], ...] = ()


IMAGENET_HEAD = "the image-classification head of an encoder-only checkpoint"

HF_RENAMES: tuple[Rename, ...] = (
    (r"^segformer\.", ""),
    (r"^decode_head\.linear_projections\.", "decode_head.linear_c."),
)

KEY_FORMATS = (  # detection tries them in this order; ours is the fallback
    KeyFormat(
        name="nvlabs",
        signature=(
            r"^(backbone\.)?(patch_embed|block|norm)\d+\."
            r"|^decode_head\.(linear_c\d|linear_pred\.|linear_fuse\.conv\.)"
        ),
        renames=(
            (r"^backbone\.", ""),
            (r"^(?P<name>patch_embed|block|norm|decode_head\.linear_c)(?P<index>\d+)\.", _zero_based),
            (r"^patch_embed\.(\d+)\.proj\.", r"encoder.patch_embeddings.\1.proj."),
            (r"^patch_embed\.(\d+)\.norm\.", r"encoder.patch_embeddings.\1.layer_norm."),
            (r"^block\.", "encoder.block."),
            (r"^norm\.", "encoder.layer_norm."),
            (r"\.norm1\.", ".layer_norm_1."),
            (r"\.norm2\.", ".layer_norm_2."),
            (r"\.attn\.q\.", ".attention.self.query."),
            (r"\.attn\.kv\.", ".attention.self.kv."),  # split into key and value by _split_kv
            (r"\.attn\.sr\.", ".attention.self.sr."),
            (r"\.attn\.norm\.", ".attention.self.layer_norm."),
            (r"\.attn\.proj\.", ".attention.output.dense."),
            (r"\.mlp\.fc1\.", ".mlp.dense1."),
            (r"\.mlp\.fc2\.", ".mlp.dense2."),
            (r"^decode_head\.linear_fuse\.conv\.", "decode_head.linear_fuse."),
            (r"^decode_head\.linear_fuse\.bn\.", "decode_head.batch_norm."),
            (r"^decode_head\.linear_pred\.", "decode_head.classifier."),
        ),
        ignored=(
            (r"^(backbone\.)?head\.", IMAGENET_HEAD),
            (r"^decode_head\.conv_seg\.", "mmseg's default classifier, which SegFormer's head never uses"),
            (r"^auxiliary_head\.", "an auxiliary head (a training-time loss branch)"),
        ),
    ),
    KeyFormat(
        name="transformers5",
        signature=r"^(segformer\.)?stages\.\d+\.",
        renames=HF_RENAMES
        + (
            (r"^stages\.(\d+)\.patch_embeddings\.", r"encoder.patch_embeddings.\1."),
            (r"^stages\.(\d+)\.blocks\.", r"encoder.block.\1."),
            (r"^stages\.(\d+)\.layer_norm\.", r"encoder.layer_norm.\1."),
            (r"\.layernorm_before\.", ".layer_norm_1."),
            (r"\.layernorm_after\.", ".layer_norm_2."),
            (r"\.attention\.q_proj\.", ".attention.self.query."),
            (r"\.attention\.k_proj\.", ".attention.self.key."),
            (r"\.attention\.v_proj\.", ".attention.self.value."),
            (r"\.attention\.o_proj\.", ".attention.output.dense."),
            (r"\.attention\.sequence_reduction\.sequence_reduction\.", ".attention.self.sr."),
            (r"\.attention\.sequence_reduction\.layer_norm\.", ".attention.self.layer_norm."),
            (r"\.mlp\.fc1\.", ".mlp.dense1."),
            (r"\.mlp\.fc2\.", ".mlp.dense2."),
        ),
        ignored=((r"^classifier\.", IMAGENET_HEAD),),
    ),
    KeyFormat(
        name="huggingface",
        signature=r"^segformer\.encoder\.|^decode_head\.linear_projections\.",
        renames=HF_RENAMES,
        ignored=((r"^classifier\.", IMAGENET_HEAD),),
    ),
    # an ImageClassifier of ours: our encoder keys beside a top-level classifier (ours
    # never has one; the formats above carry a prefix or other names)
    KeyFormat(
        name=f"{FORMAT_TAG}_{CLASSIFICATION}",
        signature=r"^classifier\.",
        ignored=((r"^classifier\.", IMAGENET_HEAD),),
    ),
)
OWN_FORMAT = KeyFormat(name=FORMAT_TAG, signature="")
OWN_CLASSIFIER_FORMAT = KEY_FORMATS[-1]
FORMATS_BY_NAME = {f.name: f for f in (*KEY_FORMATS, OWN_FORMAT)}


# --- read -> unwrap -> detect ---------------------------------------------------------
@dataclass
class _Source:
    """A checkpoint as read from disk: its tensors under their original names, the key
    format, and the ``config.json`` beside it (ours or Hugging Face's), if any."""

    path: Path
    state: dict[str, torch.Tensor]
    format: str
    own_config: dict[str, Any] | None = None
    hf_config: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def _read(path: str | os.PathLike) -> _Source:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    config = None
    weights = path
    if path.is_dir():
        config_file = path / CONFIG_NAME
        if config_file.is_file():
            try:
                config = json.loads(config_file.read_text())
            except (ValueError, UnicodeDecodeError) as e:
                raise CheckpointError(f"{config_file} is not valid JSON: {e}") from e
        found = [path / name for name in HF_WEIGHTS_NAMES if (path / name).is_file()]
        if not found:
            raise CheckpointError(f"{path} holds no weights: expected one of {', '.join(HF_WEIGHTS_NAMES)}")
        weights = found[0]
    state, notes = _unwrap(_read_weights(weights), weights)
    source = _Source(path=path, state=state, format="", notes=notes)
    if config is None:
        source.format = _detect(state)
    elif config.get("format") == FORMAT_TAG:
        # Our own keys are never sniffed: a later model family may use names that look
        # like another format's.
        task = config.get("task")
        if task not in (None, CLASSIFICATION):
            raise CheckpointError(f"{path / CONFIG_NAME}: unknown task {task!r} (segmentation has none, or "
                                  f"{CLASSIFICATION!r})")
        source.own_config = {k: v for k, v in config.items() if k not in ("format", "task")}
        source.format = OWN_CLASSIFIER_FORMAT.name if task == CLASSIFICATION else FORMAT_TAG
    elif config.get("model_type") == "segformer":
        source.hf_config = config
        source.format = _detect(state)
    else:
        raise CheckpointError(
            f"{path / CONFIG_NAME} describes neither a segformer_lab model nor a Hugging Face SegFormer "
            f"(format {config.get('format')!r}, model_type {config.get('model_type')!r})"
        )
    return source


def _read_weights(file: Path) -> Any:
    """Safetensors, or a pickle restricted to tensors and plain containers."""
    suffix = file.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(file), device="cpu")
        except Exception as e:  # safetensors raises its own error type, or OSError
            raise CheckpointError(f"{file} could not be read (truncated or corrupt?): {e}") from e
    if suffix in PICKLE_SUFFIXES:
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise CheckpointError(
                f"refusing to load {file}: it needs unsafe unpickling ({_unpickling_reason(e)}), which can run "
                "arbitrary code. Only tensors and plain containers are accepted; if you trust the file, re-save "
                "its state dict as safetensors."
            ) from None
        except Exception as e:  # torch reports a damaged archive as RuntimeError, EOFError, KeyError ...
            raise CheckpointError(f"{file} could not be read (truncated or corrupt?): {e}") from e
    raise CheckpointError(
        f"{file}: unsupported weights file type {suffix!r}; expected .safetensors, {', '.join(PICKLE_SUFFIXES)}"
    )


def _unpickling_reason(error: Exception) -> str:
    """The line of torch's long weights-only message that names what was refused."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    reason = next((ln for ln in lines if "global" in ln.lower() or "unsupported" in ln.lower()), "")
    return reason[:200] or "not a plain tensor file"


def _unwrap(obj: Any, file: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
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


def _detect(state: dict[str, torch.Tensor]) -> str:
    for key_format in KEY_FORMATS:
        signature = re.compile(key_format.signature)
        if any(signature.search(k) for k in state):
            return key_format.name
    return FORMAT_TAG


# --- rename ---------------------------------------------------------------------------
def _convert(source: _Source) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The checkpoint under our key names, and its ignored keys with their reasons."""
    key_format = FORMATS_BY_NAME[source.format]
    renames = [(re.compile(p), r) for p, r in key_format.renames]
    ignored_patterns = [(re.compile(p), reason) for p, reason in key_format.ignored]
    converted, ignored = {}, {}
    for key, value in source.state.items():
        reason = next((reason for p, reason in ignored_patterns if p.search(key)), None)
        if reason is not None:
            ignored[key] = reason
            continue
        new = key
        for pattern, replacement in renames:
            new = pattern.sub(replacement, new)
        if new in converted:
            raise CheckpointError(f"{source.path}: keys collide after renaming to {new!r} (mixed key formats?)")
        converted[new] = value
    _split_kv(converted, source.path)
    return converted, ignored


def _split_kv(state: dict[str, torch.Tensor], path: Path) -> None:
    """NVlabs computes key and value with one Linear whose outputs are the key's channels
    followed by the value's; we keep two Linears."""
    for name in [k for k in state if ".attention.self.kv." in k]:
        kv = state.pop(name)
        if kv.shape[0] % 2:
            raise CheckpointError(f"{path}: {name} has {kv.shape[0]} output channels, not key and value stacked")
        state[name.replace(".kv.", ".key.")], state[name.replace(".kv.", ".value.")] = kv.chunk(2, dim=0)


# --- compare --------------------------------------------------------------------------
def _optional_patterns(model: nn.Module) -> list[str]:
    """Keys a model may miss from a plain SegFormer checkpoint.

    Any submodule can declare ``optional_checkpoint_keys``, a tuple of shell-style patterns
    relative to itself (``("freqs",)``); such keys keep their initialisation when a
    checkpoint lacks them. New model families use this for learnable pieces SegFormer
    does not have.
    """
    patterns = []
    for name, module in model.named_modules():
        for pattern in getattr(module, "optional_checkpoint_keys", ()):
            patterns.append(f"{name}.{pattern}" if name else pattern)
    return patterns


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _listing(keys: list[str]) -> str:
    more = f" (and {len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


def _load_converted(
    model: nn.Module,
    source: _Source,
    converted: dict[str, torch.Tensor],
    ignored: dict[str, str],
    reset_classifier: bool,
) -> LoadReport:
    """Check ``converted`` against the model, explain or refuse every difference, load."""
    expected = model.state_dict()
    where = str(source.path)
    report = LoadReport(path=where, format=source.format, notes=list(source.notes), unused=list(ignored))
    for reason in dict.fromkeys(ignored.values()):
        keys = [k for k, r in ignored.items() if r == reason]
        report.notes.append(f"unused: {reason}: {_listing(keys)}")

    mismatched = [k for k in expected if k in converted and converted[k].shape != expected[k].shape]
    if mismatched and all(
        k.startswith("decode_head.classifier.") and converted[k].shape[0] != expected[k].shape[0] for k in mismatched
    ):
        theirs, ours = converted[mismatched[0]].shape[0], expected[mismatched[0]].shape[0]
        if not reset_classifier:
            raise CheckpointError(
                f"{where}: the checkpoint has {theirs} classes but the model has {ours}; pass "
                f"reset_classifier=True to load everything else with a fresh classifier (fine-tuning), "
                f"or build the model with num_classes={theirs}"
            )
        report.reinitialised = mismatched
        _warn(report, f"classifier reinitialised: the checkpoint has {theirs} classes, the model {ours}")
        mismatched = []

    encoder_only = not any(k.startswith("decode_head.") for k in converted)
    optional = _optional_patterns(model)
    fresh_head, declared, unexplained_missing = [], [], []
    for key in expected:
        if key in converted:
            continue
        if encoder_only and key.startswith(OUTSIDE_ENCODER):
            fresh_head.append(key)
        elif any(fnmatch.fnmatchcase(key, p) for p in optional):
            declared.append(key)
        elif key.endswith(".num_batches_tracked"):
            report.missing.append(key)  # absent from old BatchNorm checkpoints; unused in eval
        else:
            unexplained_missing.append(key)
    unexplained_unused = [k for k in converted if k not in expected]

    if mismatched or unexplained_missing or unexplained_unused:
        parts = [
            f"{k} has shape {_shape(converted[k])} in the checkpoint but {_shape(expected[k])} in the model"
            for k in mismatched[:MAX_LISTED]
        ]
        if len(mismatched) > MAX_LISTED:
            parts.append(f"{len(mismatched) - MAX_LISTED} more keys differ in shape")
        if unexplained_missing:
            parts.append(f"missing from the checkpoint: {_listing(unexplained_missing)}")
        if unexplained_unused:
            parts.append(f"not in the model: {_listing(unexplained_unused)}")
        raise CheckpointError(
            f"{where}: checkpoint ({source.format} format) is for another architecture: " + "; ".join(parts)
        )

    if fresh_head:
        parts = [p.rstrip(".").replace("_", " ") for p in OUTSIDE_ENCODER if any(k.startswith(p) for k in fresh_head)]
        _warn(report, f"the checkpoint is encoder-only: the {' and '.join(parts)} {'are' if len(parts) > 1 else 'is'} "
                      "freshly initialised")
    if declared:
        _warn(report, f"not in the checkpoint, kept at initialisation (optional for this model): {_listing(declared)}")
    report.missing = fresh_head + declared + report.missing
    loadable = {k: v for k, v in converted.items() if k not in report.reinitialised}
    model.load_state_dict(loadable, strict=False)
    return report


def _warn(report: LoadReport, message: str) -> None:
    report.notes.append(message)
    log.warning("%s: %s", report.path, message)


# --- configs --------------------------------------------------------------------------
def _config_from_hf(hf: dict[str, Any], encoder_only: bool, notes: list[str]) -> ModelConfig:
    """A ``ModelConfig`` from a ``SegformerConfig`` dict (missing entries take
    transformers' defaults, which are MiT-B0's)."""
    if hf.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"hidden_act {hf['hidden_act']!r} is not supported (SegFormer uses 'gelu')")
    n = hf.get("num_encoder_blocks", 4)
    lists = {
        "hidden_sizes": hf.get("hidden_sizes", [32, 64, 160, 256]),
        "depths": hf.get("depths", [2, 2, 2, 2]),
        "num_attention_heads": hf.get("num_attention_heads", [1, 2, 5, 8]),
        "sr_ratios": hf.get("sr_ratios", [8, 4, 2, 1]),
        "patch_sizes": hf.get("patch_sizes", [7, 3, 3, 3]),
        "strides": hf.get("strides", [4, 2, 2, 2]),
        "mlp_ratios": hf.get("mlp_ratios", [4] * n),
    }
    bad = {k: v for k, v in lists.items() if len(v) != n}
    if bad:
        raise CheckpointError(f"config.json: num_encoder_blocks is {n} but {bad} have other lengths")
    stages = tuple(
        StageConfig(width=w, depth=d, num_heads=h, sr_ratio=r, patch_size=p, stride=s, mlp_ratio=float(m))
        for w, d, h, r, p, s, m in zip(*lists.values())
    )
    if encoder_only:
        num_classes = DEFAULT_NUM_CLASSES
        labels = len(hf["id2label"]) if hf.get("id2label") else hf.get("num_labels")
        notes.append(
            f"encoder-only classification checkpoint ({labels} image classes): the segmentation head gets "
            f"{DEFAULT_NUM_CLASSES} classes (ADE20K's count)"
        )
    else:
        num_classes = len(hf["id2label"]) if hf.get("id2label") else hf.get("num_labels", 2)
    decoder = DecoderConfig(
        width=hf.get("decoder_hidden_size", 256), dropout=hf.get("classifier_dropout_prob", 0.1)
    )
    config = ModelConfig(
        stages=stages,
        decoder=decoder,
        num_classes=num_classes,
        in_channels=hf.get("num_channels", 3),
        drop_path_rate=hf.get("drop_path_rate", 0.1),
    )
    return _named(config)


def _infer_config(state: dict[str, torch.Tensor], notes: list[str]) -> ModelConfig:
    """A ``ModelConfig`` from the shapes of a state dict (our key names).

    Widths and the input channels come from the patch-embedding convolutions, patch
    sizes from their kernels, depths from counting blocks, reduction ratios from the
    ``sr`` kernels (none: 1), MLP ratios from ``dense1``, decoder width from
    ``linear_c.0``, classes from the classifier. Two things no weight stores are
    assumed: strides are 4 for a first stage with patch 7 and 2 otherwise (MiT's
    overlapping patch embeddings), and the heads are MiT's (1, 2, 5, 8). Other head
    counts load into the wrong model silently, so for those build the model yourself:
    ``create_model(config=..., pretrained=path)``.
    """

    def shape(key: str) -> torch.Size:
        if key not in state:
            raise CheckpointError(f"cannot infer the architecture: {key} is not in the checkpoint")
        return state[key].shape

    stages = []
    while f"encoder.patch_embeddings.{len(stages)}.proj.weight" in state:
        i = len(stages)
        width, _, patch, _ = shape(f"encoder.patch_embeddings.{i}.proj.weight")
        depth = len({k.split(".")[3] for k in state if k.startswith(f"encoder.block.{i}.")})
        sr = state.get(f"encoder.block.{i}.0.attention.self.sr.weight")
        hidden = shape(f"encoder.block.{i}.0.mlp.dense1.weight")[0]
        if i >= len(MIT_HEADS) or width % MIT_HEADS[i]:
            raise CheckpointError(
                f"cannot infer the attention heads of stage {i} (width {width}): only MiT's {MIT_HEADS} are "
                "assumed; build the model with create_model(config=..., pretrained=path)"
            )
        stages.append(
            StageConfig(
                width=width,
                depth=depth,
                num_heads=MIT_HEADS[i],
                sr_ratio=1 if sr is None else sr.shape[-1],
                patch_size=patch,
                stride=4 if i == 0 and patch == 7 else 2,
                mlp_ratio=hidden / width,
            )
        )
    if not stages:
        raise CheckpointError(
            "cannot infer the architecture: no encoder.patch_embeddings.0.proj.weight (not SegFormer?)"
        )
    in_channels = shape("encoder.patch_embeddings.0.proj.weight")[1]
    notes.append(f"architecture inferred from the weights; attention heads assumed MiT's {MIT_HEADS[: len(stages)]}")
    if "decode_head.classifier.weight" in state:
        decoder = DecoderConfig(width=shape("decode_head.linear_c.0.proj.weight")[0])
        num_classes = shape("decode_head.classifier.weight")[0]
    else:
        variant = _variant_with(tuple(stages), in_channels)
        decoder = variant.decoder if variant is not None else DecoderConfig()
        num_classes = DEFAULT_NUM_CLASSES
        notes.append(
            f"encoder-only checkpoint: the segmentation head gets {num_classes} classes "
            f"and decoder width {decoder.width}"
        )
    return _named(ModelConfig(stages=tuple(stages), decoder=decoder, num_classes=num_classes, in_channels=in_channels))


def _variant_with(stages: tuple[StageConfig, ...], in_channels: int) -> ModelConfig | None:
    """The registered model whose encoder is exactly ``stages``, if any."""
    for name in list_models():
        config = get_config(name)
        if config.stages == stages and config.in_channels == in_channels:
            return config
    return None


def _named(config: ModelConfig) -> ModelConfig:
    """``config`` named after the registered model it equals in architecture, if any."""
    variant = _variant_with(config.stages, config.in_channels)
    if variant is not None and variant.decoder.width == config.decoder.width:
        return config.replace(name=variant.name)
    return config


# --- public API -----------------------------------------------------------------------
def load_weights(model: nn.Module, path: str | os.PathLike, reset_classifier: bool = False) -> LoadReport:
    """Load a checkpoint of any supported format into ``model``.

    Differences are explained or refused: a missing decode head (encoder-only
    checkpoints), a classifier for another class count (only with
    ``reset_classifier=True``), keys the model declares optional and ignorable entries
    (an ImageNet classifier or ours, mmseg's auxiliary head) are logged and reported; any
    other missing, unexpected or differently shaped key raises ``CheckpointError`` naming
    the keys and both shapes, and the model is left untouched.
    """
    source = _read(path)
    converted, ignored = _convert(source)
    report = _load_converted(model, source, converted, ignored, reset_classifier)
    log.info("loaded %s (%s format); %s", source.path, source.format, "; ".join(report.notes) or "all keys matched")
    return report


def load_model(path: str | os.PathLike) -> SegmentationModel:
    """Build the model a checkpoint describes and load it; returned in eval mode.

    The architecture comes from the checkpoint's own ``config.json`` (ours or Hugging
    Face's) or, for a bare weights file, from the tensor shapes (see ``_infer_config``
    for what is assumed). Encoder-only checkpoints get a fresh decode head with
    150 classes; fine-tune it, or use ``create_model(..., pretrained=path)`` to choose.
    """
    source = _read(path)
    converted, ignored = _convert(source)
    encoder_only = not any(k.startswith("decode_head.") for k in converted)
    assumptions: list[str] = []
    if source.own_config is not None:
        config = ModelConfig.from_dict(source.own_config)
        if source.format == OWN_CLASSIFIER_FORMAT.name:
            assumptions.append(
                f"image classifier ({config.num_classes} image classes): the segmentation head gets "
                f"{DEFAULT_NUM_CLASSES} classes (ADE20K's count)"
            )
            config = config.replace(num_classes=DEFAULT_NUM_CLASSES)
    elif source.hf_config is not None:
        config = _config_from_hf(source.hf_config, encoder_only, assumptions)
    else:
        config = _infer_config(converted, assumptions)
    for note in assumptions:
        log.warning("%s: %s", source.path, note)
    model = SegmentationModel(config)
    report = _load_converted(model, source, converted, ignored, reset_classifier=False)
    summary = "; ".join(report.notes) or "all keys matched"
    log.info("loaded %s (%s format) as %s; %s", source.path, source.format, config.name, summary)
    return model.eval()


def load_classifier_weights(model: ImageClassifier, path: str | os.PathLike) -> LoadReport:
    """Load an ``ImageClassifier`` checkpoint of ours (a directory or its
    ``model.safetensors``) into ``model``, all of it; any difference in keys or shapes is
    a ``CheckpointError`` naming them, and the model is left untouched."""
    source = _read(path)
    if source.format != OWN_CLASSIFIER_FORMAT.name:
        raise CheckpointError(
            f"{path}: not an image classifier saved by segformer-lab ({source.format} format); a classifier loads "
            "only those (a segmentation model takes the encoder of any checkpoint: create_model(pretrained=...))"
        )
    return _load_converted(model, source, source.state, {}, reset_classifier=False)


def load_classifier(path: str | os.PathLike) -> ImageClassifier:
    """The ``ImageClassifier`` a classifier directory (``save_pretrained``) describes, with
    its weights; returned in eval mode."""
    source = _read(path)
    if source.own_config is None or source.format != OWN_CLASSIFIER_FORMAT.name:
        raise CheckpointError(
            f"{path}: not an image-classifier directory of segformer-lab (config.json with "
            f'"task": "{CLASSIFICATION}" and model.safetensors)'
        )
    model = ImageClassifier(ModelConfig.from_dict(source.own_config))
    _load_converted(model, source, source.state, {}, reset_classifier=False)
    return model.eval()


def to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys -> the Hub spelling of ``SegformerForSemanticSegmentation`` (as saved by
    transformers 4 and 5): encoder keys get the ``segformer.`` prefix, the rest is equal."""
    return {(HF_PREFIX + k if k.startswith("encoder.") else k): v for k, v in state_dict.items()}


# What a transformers SegformerConfig can say about a stage; every other field must keep
# its plain-SegFormer default (``fold`` changes how, not what, a model computes).
HF_STAGE_FIELDS = ("width", "depth", "num_heads", "sr_ratio", "patch_size", "stride", "mlp_ratio", "fold")


def transformers_differences(config: ModelConfig) -> list[str]:
    """Where ``config`` departs from plain SegFormer, which transformers' model is (RoPE,
    BoostFormer components, resizers ...): ``["stage 0: mixer='pooled'", ...]``."""
    differences = []
    for i, stage in enumerate(config.stages):
        plain = StageConfig(**{name: getattr(stage, name) for name in HF_STAGE_FIELDS})
        differences += [f"stage {i}: {f.name}={getattr(stage, f.name)!r}" for f in fields(StageConfig)
                        if getattr(stage, f.name) != getattr(plain, f.name)]  # fmt: skip
    decoder = config.decoder
    plain = DecoderConfig(width=decoder.width, dropout=decoder.dropout, dropout_mode=decoder.dropout_mode,
                          fold=decoder.fold)  # fmt: skip
    differences += [f"decoder: {f.name}={getattr(decoder, f.name)!r}" for f in fields(DecoderConfig)
                    if getattr(decoder, f.name) != getattr(plain, f.name)]  # fmt: skip
    if config.input_resizer is not None:
        differences.append(f"input_resizer={config.input_resizer!r}")
    return differences


def to_hf_config(config: ModelConfig) -> dict[str, Any]:
    """The ``transformers.SegformerConfig`` keyword arguments describing ``config``; a
    ``ValueError`` naming the differences if transformers' SegFormer cannot express it.

    MLP ratios are written as ints where they are whole numbers: transformers 5 validates
    ``mlp_ratios`` as a list of ints."""
    differences = transformers_differences(config)
    if differences:
        raise ValueError(
            f"{config.name} has no transformers equivalent (SegformerForSemanticSegmentation is plain SegFormer): "
            + ", ".join(differences)
        )
    stages = config.stages
    return {
        "num_channels": config.in_channels,
        "num_encoder_blocks": len(stages),
        "depths": [s.depth for s in stages],
        "sr_ratios": [s.sr_ratio for s in stages],
        "hidden_sizes": [s.width for s in stages],
        "patch_sizes": [s.patch_size for s in stages],
        "strides": [s.stride for s in stages],
        "num_attention_heads": [s.num_heads for s in stages],
        "mlp_ratios": [int(s.mlp_ratio) if float(s.mlp_ratio).is_integer() else s.mlp_ratio for s in stages],
        "decoder_hidden_size": config.decoder.width,
        "classifier_dropout_prob": config.decoder.dropout,
        "drop_path_rate": config.drop_path_rate,
        "num_labels": config.num_classes,
    }
