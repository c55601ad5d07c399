"""Rename: a checkpoint's tensors under our key names, by its key format's entry."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..pretrained import CheckpointError
from .formats import Split, Transform
from .compare import listing
from .reading import Source


def convert(source: Source) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The checkpoint under our key names, and its ignored keys with their reasons; what
    the format's ``transforms`` changed is noted in ``source.notes`` (the load report)."""
    key_format = source.format
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
    for split in key_format.splits:
        split_stacked(converted, split, source.path)
    for transform in key_format.transforms:
        apply_transform(converted, transform, source)
    return converted, ignored


def apply_transform(state: dict[str, torch.Tensor], transform: Transform, source: Source) -> None:
    """Replace every tensor whose key ``transform``'s pattern finds by the entries its
    function returns, and note which keys were converted and why."""
    pattern, function, reason = transform
    matched = [k for k in state if re.search(pattern, k)]
    for name in matched:
        replacement = function(name, state.pop(name))
        collisions = [k for k in replacement if k in state]
        if collisions:
            raise CheckpointError(f"{source.path}: converting {name} ({reason}) collides with {collisions[0]!r}")
        state.update(replacement)
    if matched:
        source.notes.append(f"converted: {reason}: {listing(matched)}")


def split_stacked(state: dict[str, torch.Tensor], split: Split, path: Path) -> None:
    """Replace every tensor whose key holds ``split``'s fragment by its equal parts along
    dim 0, one key per part (NVlabs' ``kv``: key channels, then value channels)."""
    fragment, parts = split
    for name in [k for k in state if fragment in k]:
        stacked = state.pop(name)
        if stacked.shape[0] % len(parts):
            raise CheckpointError(
                f"{path}: {name} has {stacked.shape[0]} output channels, not {len(parts)} parts "
                f"({', '.join(p.strip('.') for p in parts)}) stacked"
            )
        for part, tensor in zip(parts, stacked.chunk(len(parts), dim=0)):
            state[name.replace(fragment, part)] = tensor
