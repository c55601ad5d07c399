"""Intervals over seeds and paired differences (analysis/statistics.py), and the study's
summary built on them (tools/study/summary.py)."""

from __future__ import annotations

import math

import pytest

from segformer_lab.analysis.statistics import mean_interval, paired_difference, verdict
from segformer_lab.tools.study.summary import position_effect, summarise


def test_t_interval_matches_the_textbook_value():
    interval = mean_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, n 3: t(0.975, 2) = 4.3027
    half = 4.302652729911275 / math.sqrt(3)
    assert interval.mean == 2.0 and interval.low == pytest.approx(2 - half) and interval.high == pytest.approx(2 + half)
    assert mean_interval([5.0]).to_dict() == {"mean": 5.0, "ci95": [5.0, 5.0], "n": 1}
    with pytest.raises(ValueError, match="at least one"):
        mean_interval([])


def test_pairing_removes_what_the_seed_moves():
    """Seeds that move both variants alike (here by up to 6 points) leave the paired
    difference of +0.5 resolved, where comparing the two means' intervals could not."""
    reference = [40.0, 46.0, 43.0, 41.0, 44.0]
    variant = [r + 0.5 + e for r, e in zip(reference, [0.1, -0.1, 0.05, 0.0, -0.05])]
    difference = paired_difference(variant, reference)
    assert difference.resolved and difference.low > 0
    assert verdict(difference).startswith("resolved: +0.5 [+0.")
    assert mean_interval(variant).low < mean_interval(reference).high  # the unpaired intervals overlap
    noisy = paired_difference([r + e for r, e in zip(reference, [1.0, -1.0, 0.5, -0.5, 0.2])], reference)
    assert not noisy.resolved and verdict(noisy).startswith("within noise: +0.0 [")
    with pytest.raises(ValueError, match="one per seed"):
        paired_difference([1.0, 2.0], [1.0])


def rows(gain_natural: float, gain_control: float) -> list[dict]:
    out = []
    for seed, base in enumerate([40.0, 44.0, 42.0, 39.0, 45.0]):
        wobble = (-1) ** seed * 0.1
        for dataset, gain in (("scenes", gain_natural), ("scenes_position_free", gain_control)):
            for variant, value in (("segformer_b0", base), ("segformer_b0_rope_axial_centre", base + gain + wobble)):
                out.append({"variant": variant, "seed": seed, "dataset": dataset, "size": 128, "mIoU": value})
    return out


def test_summary_and_the_position_effect():
    data = rows(gain_natural=1.0, gain_control=0.0)
    summary = {(e["dataset"], e["variant"]): e for e in summarise(data)}
    assert summary["scenes", "segformer_b0"]["paired_difference"] is None  # the baseline
    rope = summary["scenes", "segformer_b0_rope_axial_centre"]
    assert rope["n"] == 5 and rope["mean"] == pytest.approx(43.0 + 0.02, abs=0.05)
    assert rope["paired_difference"]["baseline"] == "segformer_b0"
    assert rope["paired_difference"]["verdict"].startswith("resolved: +1.0")
    control = summary["scenes_position_free", "segformer_b0_rope_axial_centre"]["paired_difference"]
    assert control["verdict"].startswith("within noise")
    (effect,) = position_effect(data, summarise(data), "scenes", "scenes_position_free")
    assert effect["variant"] == "segformer_b0_rope_axial_centre" and effect["mean"] == pytest.approx(1.0)
    assert effect["verdict"].startswith("resolved: +1.0")
    same = rows(1.0, 1.0)
    assert position_effect(same, summarise(same), "scenes", "scenes_position_free")[0]["verdict"].startswith(
        "within noise")
