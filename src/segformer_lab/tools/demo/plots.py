"""The demo's plots: mIoU against GMACs, training curves, mIoU against the evaluation
size, and a grid of predictions on validation images (PNG files beside the report).

matplotlib is imported when the first plot is drawn (it is slow to import), on its
file-only Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ...engine.evaluation import short_side_resize
from ...inference import predict_logits
from .formatting import mean_std
from .measure import PROFILE_SIZE
from .report import Summary


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colours(models: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {model: cmap(i % 10) for i, model in enumerate(models)}


def save_figure(fig, path: Path, rect: tuple[float, float, float, float] | None = None) -> Path:
    """``fig`` laid out (inside ``rect``, figure fractions) and written atomically to ``path``."""
    plt = pyplot()
    fig.tight_layout(rect=rect)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def plot_miou_vs_gmacs(summary: Summary, colours: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for model in summary.models:
        mean, std = mean_std(summary.values(model, "mIoU"))
        ax.errorbar(summary.profile[model]["gmacs"], mean, yerr=std if len(summary.results[model]) > 1 else None,
                    fmt="o", capsize=4, color=colours[model], label=model, markersize=7, alpha=0.85)
    ax.axhline(summary.baseline["mIoU"], color="grey", linestyle="--", label="majority class")
    ax.set_xlabel(f"GMACs at {PROFILE_SIZE}x{PROFILE_SIZE} (executed)")
    ax.set_ylabel(f"val mIoU (%), short side {summary.sizes[0]}")
    ax.set_title("Accuracy vs compute")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def plot_training_curves(summary: Summary, colours: dict[str, Any], path: Path) -> Path:
    """Training loss and validation mIoU against the step: the mean over seeds at the
    steps all seeds logged, with the spread when there are several."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for model in summary.models:
        for key, ax in (("train/loss", left), ("val/mIoU", right)):
            per_seed = [dict((int(s), v) for s, v in r["curve"][key]) for r in summary.results[model]]
            steps = sorted(set.intersection(*(set(p) for p in per_seed))) if per_seed else []
            if not steps:
                continue
            values = np.array([[p[s] for s in steps] for p in per_seed])
            mean = values.mean(0)
            if key == "train/loss":
                ax.plot(steps, mean, color=colours[model], label=model, linewidth=1.4)
                if len(per_seed) > 1:
                    std = values.std(0, ddof=1)
                    ax.fill_between(steps, mean - std, mean + std, color=colours[model], alpha=0.15)
            else:
                ax.errorbar(steps, mean, yerr=values.std(0, ddof=1) if len(per_seed) > 1 else None, marker="o",
                            capsize=3, color=colours[model], label=model)
    right.axhline(summary.baseline["mIoU"], color="grey", linestyle="--", label="majority class")
    right.set_ylim(bottom=0)
    left.set_title("training loss")
    left.set_xlabel("step")
    left.set_ylabel("cross-entropy")
    right.set_title(f"validation mIoU (short side {summary.sizes[0]})")
    right.set_xlabel("step")
    right.set_ylabel("mIoU (%)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_miou_vs_size(summary: Summary, colours: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    s0, s1 = summary.sizes[0], summary.sizes[-1]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for model in summary.models:
        stats = [mean_std(summary.values(model, "mIoU", size)) for size in summary.sizes]
        ax.errorbar(summary.sizes, [m for m, _ in stats],
                    yerr=[s for _, s in stats] if len(summary.results[model]) > 1 else None,
                    marker="o", capsize=4, color=colours[model], label=model)
    ax.axhline(summary.baseline["mIoU"], color="grey", linestyle="--", label="majority class")
    ax.axvline(s0, color="black", alpha=0.2)
    ax.set_xticks(summary.sizes)
    ax.set_xlabel("evaluation short side (px); training size {}".format(s0))
    ax.set_ylabel("val mIoU (%)")
    ax.set_title(f"Resolution extrapolation ({s0} → {s1})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def predictions(models: dict[str, Any], val_set, indices: Sequence[int], size: int, device: str) -> dict[str, Any]:
    """Images, labels and each model's prediction (input short side ``size``, upsampled
    to the label size) for the grid, with the class names and palette the models carry."""
    rows = []
    with torch.no_grad():
        for index in indices:
            raw = val_set.load(val_set.samples[index])
            sample = val_set[index]
            x = short_side_resize(sample["pixel_values"][None].to(device), size)
            preds = {name: predict_logits(model, x, sample["labels"].shape).argmax(1)[0].cpu().numpy()
                     for name, model in models.items()}
            rows.append({"image": raw["image"], "labels": raw["mask"], "preds": preds,
                         "name": Path(raw["path"]).stem})
    config = next(iter(models.values())).config  # the models' own names and colours (training stores them)
    return {"rows": rows, "classes": config.class_names, "palette": config.palette}


def prediction_grid(grid: dict[str, Any], summary: Summary, path: Path) -> Path:
    """One row per image of ``grid`` (``predictions``): input, ground truth, each model;
    the legend names the classes as the models do (the dataset's names for models from
    runs that stored none)."""
    plt = pyplot()
    from matplotlib.patches import Patch

    classes, colours = grid["classes"] or summary.classes, grid["palette"] or summary.palette
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(colours)] = colours  # 255 (unlabelled) stays black
    rows = grid["rows"]
    columns = ["input", "ground truth", *summary.models]
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.3 * len(columns), 2.0 * len(rows) + 0.9),
                             squeeze=False)
    for r, row in enumerate(rows):
        panels = [row["image"], palette[row["labels"]], *(palette[row["preds"][m]] for m in summary.models)]
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
        h, w = row["labels"].shape
        axes[r][0].set_ylabel(f"{row['name']}\n{h}x{w}", fontsize=7)
    handles = [Patch(color=np.array(colours[i]) / 255, label=name) for i, name in enumerate(classes)]
    handles.append(Patch(color="black", label="unlabelled"))
    fig.legend(handles=handles, loc="lower center", ncol=min(8, len(handles)), fontsize=7, frameon=False)
    return save_figure(fig, path, rect=(0, 0.07, 1, 1))


def make_plots(summary: Summary, out: Path, grid: dict[str, Any] | None) -> dict[str, Path]:
    """Every plot into ``out``, by key (the report's order); the prediction grid when
    ``grid`` holds predictions."""
    colours = _colours(summary.models)
    paths = {
        "miou_vs_gmacs": plot_miou_vs_gmacs(summary, colours, out / "miou_vs_gmacs.png"),
        "training_curves": plot_training_curves(summary, colours, out / "training_curves.png"),
        "miou_vs_size": plot_miou_vs_size(summary, colours, out / "miou_vs_size.png"),
    }
    if grid is not None:
        paths["predictions"] = prediction_grid(grid, summary, out / "predictions.png")
    return paths
