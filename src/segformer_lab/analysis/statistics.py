"""Intervals for scores over a few random seeds, and paired differences between variants.

Seeds are few (5 by default in ``study rope``), so intervals are Student-t intervals:
with n = 5 the t quantile (2.776) widens the interval by the uncertainty of the standard
deviation itself, which a percentile bootstrap ignores (resampling 5 values gives
intervals that cover the true mean far less often than they claim). The t interval
assumes the values are roughly normal around their mean; mIoU over a validation set is
an average of many pixels, for which that is a fair assumption.

A *paired* difference compares two variants seed by seed. Seed k gives both the same
data order, augmentation and initialisation of every weight they share, so what the
seed changes moves both alike and cancels in their difference: its interval is much
narrower than the difference of two independent intervals.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

from scipy.stats import t as student_t

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided ``level`` confidence interval over ``n`` values
    (``low == high == mean`` for one value: no spread to speak of)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def resolved(self) -> bool:
        """True when the interval excludes zero (a difference the data resolve)."""
        return self.n > 1 and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci95": [self.low, self.high], "n": self.n}


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of ``values`` with its Student-t interval (``level``, default 95%)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("an interval needs at least one value")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return Interval(mean, mean, mean, 1)
    half = student_t.ppf(0.5 + level / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


def paired_difference(values: Sequence[float], reference: Sequence[float], level: float = LEVEL) -> Interval:
    """The mean of ``values[k] - reference[k]`` (the same seed k for both) with its interval."""
    if len(values) != len(reference):
        raise ValueError(f"paired values need one per seed on both sides, got {len(values)} and {len(reference)}")
    return mean_interval([a - b for a, b in zip(values, reference)], level)


def verdict(difference: Interval, digits: int = 1) -> str:
    """One plain phrase: ``resolved: +x.x [lo, hi]`` when the interval excludes zero, else
    ``within noise: +x.x [lo, hi]``."""
    text = f"{difference.mean:+.{digits}f} [{difference.low:+.{digits}f}, {difference.high:+.{digits}f}]"
    if difference.n < 2:
        return f"one seed, no interval: {difference.mean:+.{digits}f}"
    return f"resolved: {text}" if difference.resolved else f"within noise: {text}"
