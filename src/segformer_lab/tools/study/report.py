"""``study rope``'s report: ``report.md`` (the design, the tables with their 95% intervals,
one sentence per variant and size, how to reproduce) and the plot of the paired
differences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._io import atomic_write
from ..demo.formatting import duration
from ..demo.plots import pyplot, save_figure


def _interval(entry: dict[str, Any], sign: str = "") -> str:
    low, high = entry["ci95"]
    return f"{entry['mean']:{sign}.1f} [{low:{sign}.1f}, {high:{sign}.1f}]"


def plot_differences(summary: list[dict[str, Any]], datasets: list[str], sizes: list[int], path: Path) -> Path:
    """The paired difference of each variant to its baseline with its 95% interval, at each
    evaluation size; one panel per dataset."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.4 * len(datasets), 4.8), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        entries = [e for e in summary if e["dataset"] == dataset and e["paired_difference"]]
        variants = list(dict.fromkeys(e["variant"] for e in entries))
        for i, variant in enumerate(variants):
            points = [e for e in entries if e["variant"] == variant]
            x = [sizes.index(e["size"]) + (i - (len(variants) - 1) / 2) * 0.8 / max(1, len(variants)) for e in points]
            mean = [e["paired_difference"]["mean"] for e in points]
            err = [[m - e["paired_difference"]["ci95"][0] for m, e in zip(mean, points)],
                   [e["paired_difference"]["ci95"][1] - m for m, e in zip(mean, points)]]
            ax.errorbar(x, mean, yerr=err, fmt="o", capsize=4, label=f"{variant} − {points[0]['paired_difference']['baseline']}")
        ax.axhline(0.0, color="grey", linewidth=1)
        ax.set_xticks(range(len(sizes)), [f"short side {s}" for s in sizes])
        ax.set_title(dataset)
        ax.set_ylabel("paired mIoU difference (points), 95% interval")
        if variants:
            ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def write_report(out: Path, results: dict[str, Any], plot: Path | None) -> Path:
    """``out/report.md`` from ``results`` (what ``results.json`` holds)."""
    meta, summary, sizes = results["meta"], results["summary"], results["sizes"]
    config = results["config"]
    n = len(meta["seeds"])
    lines = [
        "# segformer-lab study rope",
        "",
        f"Every variant trained from scratch with the demo's recipe on the embedded scenes ({meta['train_images']} "
        f"training images of 128x128, {meta['val_images']} validation images), {config['trainer']['max_steps']} "
        f"steps of batch {config['data']['batch_size']}, seeds {', '.join(map(str, meta['seeds']))}; scored on the "
        f"validation split with the short side at {', '.join(map(str, sizes))} (1x, 2x, 3x the training size). "
        f"Seed k gives every variant the same data order, augmentation and initial value of every weight it shares "
        f"with its baseline (paired design). Intervals: 95% Student-t over the {n} seeds "
        f"(`analysis/statistics.py` says why t and not a bootstrap).",
        "",
        f"Machine: {meta['cores']} usable CPU cores, torch {meta['torch']}, {meta['threads']} thread(s). "
        f"Plan: {meta['plan']}. Wall time: {duration(meta['wall_s'])}.",
        "",
    ]
    for dataset in results["datasets"]:
        entries = [e for e in summary if e["dataset"] == dataset]
        variants = list(dict.fromkeys(e["variant"] for e in entries))
        cell = {(e["variant"], e["size"]): e for e in entries}
        lines += [f"## {dataset}", "", "mIoU (%), mean [95% interval]:", "",
                  "| variant | " + " | ".join(f"@{s}" for s in sizes) + " |",
                  "| --- | " + " | ".join("---:" for _ in sizes) + " |"]
        for variant in variants:
            lines.append(f"| {variant} | " + " | ".join(_interval(cell[variant, s]) if (variant, s) in cell else "—"
                                                      for s in sizes) + " |")
        lines += ["", "Paired difference to the baseline (mIoU points), seed by seed:", "",
                  "| variant | baseline | " + " | ".join(f"@{s}" for s in sizes) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in sizes) + " |"]
        for variant in variants:
            diffs = [cell[variant, s]["paired_difference"] if (variant, s) in cell else None for s in sizes]
            if not any(diffs):
                continue
            baseline = next(d for d in diffs if d)["baseline"]
            lines.append(f"| {variant} | {baseline} | " + " | ".join(d["verdict"] if d else "—" for d in diffs)
                         + " |")
        lines.append("")
    if results["position_effect"]:
        lines += ["## Does RoPE help more where position matters?", "",
                  f"Gain over the baseline on {results['datasets'][0]} minus the gain on {results['datasets'][1]} "
                  "(where every scene is upside down with probability 1/2), seed by seed:", "",
                  "| variant | " + " | ".join(f"@{s}" for s in sizes) + " |",
                  "| --- | " + " | ".join("---" for _ in sizes) + " |"]
        effects = {(e["variant"], e["size"]): e for e in results["position_effect"]}
        for variant in dict.fromkeys(e["variant"] for e in results["position_effect"]):
            lines.append(f"| {variant} | " + " | ".join(effects[variant, s]["verdict"] if (variant, s) in effects
                                                      else "—" for s in sizes) + " |")
        lines.append("")
    if plot is not None:
        lines += ["## Paired differences", "", f"![paired differences]({plot.name})", ""]
    lines += ["## Reproduce", "", "```bash", meta["command"], "```", "",
              "Per run and size: `results.json` (`runs`); the runs themselves: `runs/<dataset>/<variant>-seed<k>`.", ""]
    path = out / "report.md"
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines), encoding="utf-8"))
    return path
