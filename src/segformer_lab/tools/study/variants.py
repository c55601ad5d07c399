"""The variants of ``study rope`` and the initialisation they share.

Every variant is a registered model with its RoPE settings; the name says the frequencies
(axial or mixed) and where a key of a reduced attention map is placed: ``centre`` of the
window it summarises (exact relative positions), or ``pooled`` rotation factors (the
SegFormer-with-RoPE project's keys: the average of the window's phasors, which also
shrinks a key's norm). Each variant but the first is compared with its ``baseline``:
SegFormer-B0 for the SegFormer variants and for BoostFormer-B0, BoostFormer-B0 for
BoostFormer with RoPE (so that each difference is one change).

Pairing: for seed k, every variant starts from the same initial value of every weight it
shares (same name and shape) with its baseline — built under seed k, its shared tensors
copied from the baseline's own seed-k initialisation — and trains on the same data order
and augmentation (the recipe's seed). What the seed changes then moves both alike and
cancels in their difference.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...models import create_model


@dataclass(frozen=True)
class Variant:
    name: str
    model: str  # the registered model
    rope: dict[str, Any] = field(default_factory=dict)  # model.overrides.rope (none without RoPE)
    baseline: str | None = None  # the variant it shares its initialisation with and is compared with


VARIANTS = (
    Variant("segformer_b0", "segformer_b0"),
    Variant("segformer_b0_rope_axial_centre", "segformer_b0_rope_axial", {"key_positions": "centre", "theta": 100.0},
            "segformer_b0"),
    Variant("segformer_b0_rope_axial_pooled", "segformer_b0_rope_axial", {"key_positions": "pooled", "theta": 100.0},
            "segformer_b0"),
    Variant("segformer_b0_rope_mixed_centre", "segformer_b0_rope_mixed", {"key_positions": "centre", "theta": 10.0},
            "segformer_b0"),
    # the SegFormer-with-RoPE project's mixed model: pooled keys and theta 100
    Variant("segformer_b0_rope_mixed_pooled", "segformer_b0_rope_mixed", {"key_positions": "pooled", "theta": 100.0},
            "segformer_b0"),
    Variant("boostformer_b0", "boostformer_b0", {}, "segformer_b0"),
    Variant("boostformer_b0_rope_mixed_centre", "boostformer_b0_rope_mixed",
            {"key_positions": "centre", "theta": 10.0}, "boostformer_b0"),
)
BY_NAME = {v.name: v for v in VARIANTS}
# what the position-free control repeats: the baseline and one variant per kind of frequencies,
# keys at the centre (the exact placement); a third of the study's time instead of all of it
CONTROL_VARIANTS = ("segformer_b0", "segformer_b0_rope_axial_centre", "segformer_b0_rope_mixed_centre")


def select(names: list[str] | None, default: tuple[str, ...]) -> list[Variant]:
    """The variants named (all of ``default`` when None), in the study's order, each with
    its baseline chain included (a difference needs the baseline's runs)."""
    wanted = set(default if names is None else names)
    unknown = sorted(wanted - BY_NAME.keys())
    if unknown:
        raise ValueError(f"unknown study variant(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    for name in list(wanted):
        while BY_NAME[name].baseline is not None:
            name = BY_NAME[name].baseline
            wanted.add(name)
    return [v for v in VARIANTS if v.name in wanted]


def run_config(base: dict[str, Any], variant: Variant, seed: int, init: Path | None) -> dict[str, Any]:
    """The recipe of one run: ``variant`` trained with ``seed`` from the weights in ``init``."""
    config = copy.deepcopy(base)
    config["seed"] = seed
    model = config["model"]
    model["name"], model["pretrained"] = variant.model, None if init is None else str(init)
    if variant.rope:
        model["overrides"] = {**model.get("overrides", {}), "rope": dict(variant.rope)}
    return config


def initialisation(base: dict[str, Any], variant: Variant, seed: int) -> torch.nn.Module:
    """``variant`` as initialised for seed ``seed``: built under that seed, then every
    tensor it shares with its baseline (same name and shape) replaced by the baseline's
    own seed-``seed`` initialisation (recursively: the baseline's shared tensors are its
    baseline's)."""
    spec = run_config(base, variant, seed, None)["model"]
    torch.manual_seed(seed)
    model = create_model(spec["name"], num_classes=spec["num_classes"], **spec.get("overrides", {}))
    if variant.baseline is not None:
        own = model.state_dict()
        reference = initialisation(base, BY_NAME[variant.baseline], seed).state_dict()
        shared = {key: value for key, value in reference.items() if key in own and own[key].shape == value.shape}
        model.load_state_dict(shared, strict=False)
    return model
