"""How the demo writes its numbers: durations, and mean ± sample std over seeds."""

from __future__ import annotations

import math
import statistics
from typing import Sequence


def duration(seconds: float) -> str:
    """``"4.2s"`` under a minute, ``"2m03s"`` from one minute."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the values that are
    numbers; NaN, NaN when none is."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def pm(values: Sequence[float], digits: int = 1) -> str:
    """``"41.2"`` for one value, ``"41.2 ± 0.8"`` (sample std) for several."""
    mean, std = mean_std(values)
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f}" if len(values) < 2 else f"{mean:.{digits}f} ± {std:.{digits}f}"
