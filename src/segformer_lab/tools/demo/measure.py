"""What the demo measures besides accuracy: parameters and MACs (``analysis.profiling``) and
CPU latency, every model timed in turns (``analysis.timing``)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

import torch

from ..._io import read_json, write_json
from ...models import create_model
from ...analysis.profiling import profile_model
from ...analysis.timing import time_in_turns

PROFILE_SIZE = 512  # the side of the square input that MACs are counted (and latency timed) at


def profile_models(models: Sequence[str], num_classes: int) -> dict[str, dict[str, float]]:
    """Parameters and GMACs (executed, and the published computation) at ``PROFILE_SIZE``²."""
    out = {}
    for name in models:
        prof = profile_model(name, (PROFILE_SIZE, PROFILE_SIZE), num_classes=num_classes)
        out[name] = {"params": prof.params, "gmacs": prof.executed.total / 1e9,
                     "gmacs_published": prof.published.total / 1e9}
    return out


def measure_latency(models: Sequence[str], num_classes: int, size: int, warmup: int, repeats: int,
                    cache: Path) -> tuple[dict[str, float], bool]:
    """Median CPU milliseconds of one ``size``² image per model, all timed in turns;
    cached in ``cache`` for the same models and settings."""
    key = {"models": list(models), "num_classes": num_classes, "size": size, "warmup": warmup,
           "repeats": repeats, "threads": torch.get_num_threads(), "torch": torch.__version__}
    cached = read_json(cache)
    if cached and cached.get("key") == key:
        return cached["median_ms"], True
    runners = {name: create_model(name, num_classes=num_classes).eval() for name in models}
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    times, _ = time_in_turns(runners, x, warmup, repeats)
    medians = {name: statistics.median(t) for name, t in times.items()}
    write_json(cache, {"key": key, "median_ms": medians, "times_ms": times})
    return medians, False
