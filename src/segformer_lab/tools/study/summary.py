"""What ``study rope`` concludes from its runs: per dataset, variant and evaluation size the
mean mIoU with its 95% interval, the paired difference to the variant's baseline, and on
the datasets both have, how much more a variant gains where position carries information
(``analysis.statistics``: Student-t intervals over seeds, and why)."""

from __future__ import annotations

from typing import Any

from ...analysis.statistics import mean_interval, paired_difference, verdict
from .variants import BY_NAME


def by_seed(rows: list[dict[str, Any]], dataset: str, variant: str, size: int) -> dict[int, float]:
    return {r["seed"]: r["mIoU"] for r in rows
            if r["dataset"] == dataset and r["variant"] == variant and r["size"] == size}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per dataset, variant and size of ``rows`` (``{variant, seed, dataset, size,
    mIoU}``): ``mean``, ``ci95``, ``n`` and ``paired_difference`` to the baseline (``None``
    for the baseline itself) over the seeds both have."""
    keys = list(dict.fromkeys((r["dataset"], r["variant"], r["size"]) for r in rows))
    summary = []
    for dataset, variant, size in keys:
        own = by_seed(rows, dataset, variant, size)
        entry = {"dataset": dataset, "variant": variant, "size": size, **mean_interval(list(own.values())).to_dict(),
                 "paired_difference": None}
        baseline = BY_NAME[variant].baseline if variant in BY_NAME else None
        reference = by_seed(rows, dataset, baseline, size) if baseline else {}
        seeds = sorted(own.keys() & reference.keys())
        if seeds:
            difference = paired_difference([own[s] for s in seeds], [reference[s] for s in seeds])
            entry["paired_difference"] = {"baseline": baseline, **difference.to_dict(),
                                          "verdict": verdict(difference)}
        summary.append(entry)
    return summary


def position_effect(rows: list[dict[str, Any]], summary: list[dict[str, Any]], natural: str,
                    control: str) -> list[dict[str, Any]]:
    """Per variant and size of ``summary`` (``summarise(rows)``) present on both datasets: its
    gain over the baseline where position matters (``natural``) minus its gain where it does
    not (``control``), seed by seed (the same seed has the same initialisation on both), with
    its interval."""
    effects = []
    for entry in summary:
        if entry["dataset"] != natural or entry["paired_difference"] is None:
            continue
        variant, size, baseline = entry["variant"], entry["size"], entry["paired_difference"]["baseline"]
        gains = []
        for dataset in (natural, control):
            own, reference = by_seed(rows, dataset, variant, size), by_seed(rows, dataset, baseline, size)
            gains.append({s: own[s] - reference[s] for s in own.keys() & reference.keys()})
        seeds = sorted(gains[0].keys() & gains[1].keys())
        if seeds:
            difference = paired_difference([gains[0][s] for s in seeds], [gains[1][s] for s in seeds])
            effects.append({"variant": variant, "size": size, "baseline": baseline, **difference.to_dict(),
                            "verdict": verdict(difference)})
    return effects
