"""Activations by name: the one table that configs validate against and blocks build from."""

from __future__ import annotations

from torch import nn

# ``relu6`` is friendlier to mobile runtimes and int8 quantisation.
ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "relu": nn.ReLU, "relu6": nn.ReLU6}


def build_act(kind: str) -> nn.Module:
    """A fresh activation module: ``"gelu"``, ``"relu"`` or ``"relu6"``."""
    if kind not in ACTIVATIONS:
        raise ValueError(f"unknown activation {kind!r}; choose one of {tuple(ACTIVATIONS)}")
    return ACTIVATIONS[kind]()
