"""Compare a converted checkpoint with the model, explain or refuse every difference,
load it; ``LoadReport`` says what was done."""

from __future__ import annotations

import fnmatch
import logging
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..pretrained import CheckpointError
from .reading import Source

log = logging.getLogger("segformer_lab")

MAX_LISTED = 5
# What an encoder-only checkpoint leaves at its initialisation in a segmentation model:
# the decode head, and the input resizer (which starts as plain bilinear resizing).
OUTSIDE_ENCODER = ("decode_head.", "input_resizer.")


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


def optional_patterns(model: nn.Module) -> list[str]:
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


def shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def listing(keys: list[str]) -> str:
    more = f" (and {len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


def warn(report: LoadReport, message: str) -> None:
    report.notes.append(message)
    log.warning("%s: %s", report.path, message)


def load_converted(
    model: nn.Module,
    source: Source,
    converted: dict[str, torch.Tensor],
    ignored: dict[str, str],
    reset_classifier: bool,
) -> LoadReport:
    """Check ``converted`` against the model, explain or refuse every difference, load."""
    expected = model.state_dict()
    where = str(source.path)
    report = LoadReport(path=where, format=source.format.name, notes=list(source.notes), unused=list(ignored))
    for reason in dict.fromkeys(ignored.values()):
        keys = [k for k, r in ignored.items() if r == reason]
        report.notes.append(f"unused: {reason}: {listing(keys)}")

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
        warn(report, f"classifier reinitialised: the checkpoint has {theirs} classes, the model {ours}")
        mismatched = []

    encoder_only = not any(k.startswith("decode_head.") for k in converted)
    optional = optional_patterns(model)
    format_optional = [(re.compile(p), reason) for p, reason in source.format.optional]
    fresh_head, declared, unexplained_missing = [], [], []
    by_format: dict[str, list[str]] = {}
    for key in expected:
        if key in converted:
            continue
        reason = next((reason for p, reason in format_optional if p.search(key)), None)
        if encoder_only and key.startswith(OUTSIDE_ENCODER):
            fresh_head.append(key)
        elif reason is not None:
            by_format.setdefault(reason, []).append(key)
        elif any(fnmatch.fnmatchcase(key, p) for p in optional):
            declared.append(key)
        elif key.endswith(".num_batches_tracked"):
            report.missing.append(key)  # absent from old BatchNorm checkpoints; unused in eval
        else:
            unexplained_missing.append(key)
    unexplained_unused = [k for k in converted if k not in expected]

    if mismatched or unexplained_missing or unexplained_unused:
        parts = [
            f"{k} has shape {shape(converted[k])} in the checkpoint but {shape(expected[k])} in the model"
            for k in mismatched[:MAX_LISTED]
        ]
        if len(mismatched) > MAX_LISTED:
            parts.append(f"{len(mismatched) - MAX_LISTED} more keys differ in shape")
        if unexplained_missing:
            parts.append(f"missing from the checkpoint: {listing(unexplained_missing)}")
        if unexplained_unused:
            parts.append(f"not in the model: {listing(unexplained_unused)}")
        raise CheckpointError(
            f"{where}: checkpoint ({source.format.name} format) is for another architecture: " + "; ".join(parts)
        )

    if fresh_head:
        parts = [p.rstrip(".").replace("_", " ") for p in OUTSIDE_ENCODER if any(k.startswith(p) for k in fresh_head)]
        warn(report, f"the checkpoint is encoder-only: the {' and '.join(parts)} {'are' if len(parts) > 1 else 'is'} "
                     "freshly initialised")
    for reason, keys in by_format.items():
        warn(report, f"not in {source.format.name} checkpoints ({reason}), kept at initialisation: {listing(keys)}")
    if declared:
        warn(report, f"not in the checkpoint, kept at initialisation (optional for this model): {listing(declared)}")
    report.missing = fresh_head + [k for keys in by_format.values() for k in keys] + declared + report.missing
    loadable = {k: v for k, v in converted.items() if k not in report.reinitialised}
    model.load_state_dict(loadable, strict=False)
    return report
