"""The demo's report: everything it shows (``Summary``) and ``report.md``, the table of
the models against the majority-class baseline, per-class IoU, plots and how to
reproduce it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataset import IMAGE_SIZE
from .formatting import duration, mean_std, pm
from .measure import PROFILE_SIZE
from .recipe import VAL_POINTS


@dataclass
class Summary:
    """Everything the report shows, per model (lists over seeds)."""

    models: list[str]
    sizes: list[int]
    results: dict[str, list[dict[str, Any]]]
    profile: dict[str, dict[str, float]]
    latency_ms: dict[str, float]
    latency_size: int
    baseline: dict[str, Any]
    classes: list[str]
    palette: list[tuple[int, int, int]]
    config: dict[str, Any]
    dataset: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)  # threads, cores, torch, plan (the machine)

    def values(self, model: str, metric: str, size: int | None = None) -> list[float]:
        size = self.sizes[0] if size is None else size
        return [r["scores"][str(size)][metric] for r in self.results[model]]


def write_report(summary: Summary, out: Path, plots: dict[str, Path]) -> Path:
    """``out/report.md``: the recipe and machine, the table with the baseline, per-class
    IoU, the plots and the command that reproduces the demo."""
    s0, s1 = summary.sizes[0], summary.sizes[-1]
    config = summary.config
    threads = summary.extra.get("threads", "?")
    warmup = config["optim"]["warmup"]
    warmup = f"{warmup:.0%} of the steps" if isinstance(warmup, float) else f"{warmup} steps"
    seeds = sorted({r["seed"] for runs in summary.results.values() for r in runs})
    n = len(seeds)
    lines = [
        "# segformer-lab demo",
        "",
        f"Scene parsing on the embedded scenes dataset ({summary.dataset['train']} training images of "
        f"{IMAGE_SIZE}x{IMAGE_SIZE}, {summary.dataset['val']} validation images of varied sizes, "
        f"{len(summary.classes)} classes), every model trained from scratch with one recipe "
        f"(`segformer_lab/tools/demo/demo.yaml`): {config['trainer']['max_steps']} steps of batch "
        f"{config['data']['batch_size']}, "
        f"AdamW lr {config['optim']['lr']:g} (weight decay {config['optim']['weight_decay']:g}), warmup over "
        f"{warmup} then poly {config['optim']['poly_power']:g} decay; "
        + (f"seed {seeds[0]}." if n == 1 else f"{n} seeds ({', '.join(map(str, seeds))}), mean ± sample std."),
        f"Machine: {summary.extra.get('cores', '?')} usable CPU cores, torch {summary.extra.get('torch', '?')}, "
        f"{threads} thread{'s' if threads != 1 else ''}. Steps: {summary.extra.get('plan', '?')}.",
        "",
        f"Scores of the final weights on the validation split in percent, each image resized so that its short "
        f"side is {s0} (the training size); **mIoU @{s1}**: short side {s1} (2x, extrapolation). Labels stay at "
        f"their own size. Params and GMACs (executed, {len(summary.classes)} classes) at {PROFILE_SIZE}x"
        f"{PROFILE_SIZE}; CPU latency: median of one {summary.latency_size}x{summary.latency_size} image, batch 1, "
        f"{threads} thread{'s' if threads != 1 else ''}, all models timed in turns. Training time includes the "
        f"{VAL_POINTS} validations.",
        "",
        f"| model | mIoU | mAcc | aAcc | params | GMACs @{PROFILE_SIZE}² | CPU ms @{summary.latency_size}² "
        f"| training time | mIoU @{s1} |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in summary.models:
        prof, ms = summary.profile[model], summary.latency_ms.get(model)
        times = [r["train_time_s"] for r in summary.results[model]]
        mean_time = statistics.fmean(times)
        lines.append(
            f"| {model} | {pm(summary.values(model, 'mIoU'))} | {pm(summary.values(model, 'mAcc'))} "
            f"| {pm(summary.values(model, 'aAcc'))} | {prof['params']:,} | {prof['gmacs']:.2f} "
            f"| {'—' if ms is None else f'{ms:.0f}'} | {duration(mean_time)} "
            f"| {pm(summary.values(model, 'mIoU', s1))} |")
    base = summary.baseline
    lines.append(f"| majority class ({summary.classes[base['class']]}) | {base['mIoU']:.1f} | {base['mAcc']:.1f} "
                 f"| {base['aAcc']:.1f} | — | — | — | — | {base['mIoU']:.1f} |")
    best = max(summary.models, key=lambda m: mean_std(summary.values(m, "mIoU"))[0])
    best_miou = mean_std(summary.values(best, "mIoU"))[0]
    lines += [
        "",
        f"Best: **{best}**, mIoU {best_miou:.1f} against {base['mIoU']:.1f} for always predicting "
        f"'{summary.classes[base['class']]}' (the most frequent training class, "
        f"{100 * base['train_fraction']:.0f}% of the labelled training pixels).",
        "",
        "Per-class IoU (short side {}):".format(s0),
        "",
        "| class | " + " | ".join(summary.models) + " |",
        "| --- | " + " | ".join("---:" for _ in summary.models) + " |",
    ]
    for name in summary.classes:
        cells = []
        for model in summary.models:
            values = [r["scores"][str(s0)]["IoU"].get(name) for r in summary.results[model]]
            cells.append(pm([v for v in values if v is not None]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Plots", ""]
    titles = {"miou_vs_gmacs": "mIoU vs GMACs", "training_curves": "Training curves",
              "miou_vs_size": "mIoU vs evaluation size", "predictions": "Predictions"}
    for key, path in plots.items():
        lines += [f"### {titles.get(key, key)}", "", f"![{titles.get(key, key)}]({path.name})", ""]
    lines += [
        "## Reproduce",
        "",
        "```bash",
        f"segformer-lab demo --out {out} --steps {config['trainer']['max_steps']}"
        + (f" --seeds {n}" if n > 1 else "") + " --models " + " ".join(summary.models),
        "```",
        "",
        "Run directories (config, checkpoints, CSV/TensorBoard logs, result.json): "
        + ", ".join(f"`runs/{model}-seed{seed}`" for model in summary.models for seed in seeds[:1]) + ", ...",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
