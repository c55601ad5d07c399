"""``eval --plots DIR``: an evaluation a person can read. ``confusion.png`` is the
row-normalised confusion matrix (row = ground truth, each cell the share of that class's
pixels predicted as the column's class) with class names on the axes, restricted to the
classes of the most confused pairs when there are more than ``MAX_MATRIX_CLASSES``;
``iou.png`` a bar per class; ``per_class.csv`` per class its IoU and Acc (percent, the
numbers of eval's JSON), its labelled pixels and its row of confusion counts.

The matrix is the one the scores come from (``engine.evaluate``'s ``confmat``).
matplotlib is optional: imported here, when plots are drawn, on its file-only Agg backend.
"""

from __future__ import annotations

import csv
import importlib.util
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._io import atomic_write
from ..engine import most_confused

MAX_MATRIX_CLASSES = 20  # above this, the matrix shows the classes of the most confused pairs
CONFUSION_FILE, IOU_FILE, CSV_FILE = "confusion.png", "iou.png", "per_class.csv"


def require_matplotlib() -> None:
    """A one-line error, before any work, when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError("--plots needs matplotlib, which is not installed: pip install matplotlib")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return path


def shown_classes(confmat: torch.Tensor, limit: int = MAX_MATRIX_CLASSES) -> list[int]:
    """Every class when there are at most ``limit``; else the classes of the most confused
    pairs, in order of appearance, up to ``limit`` (then sorted by index)."""
    k = confmat.shape[0]
    if k <= limit:
        return list(range(k))
    chosen: list[int] = []
    for true, predicted, _, _ in most_confused(confmat, n=k * k):
        for c in (true, predicted):
            if c not in chosen and len(chosen) < limit:
                chosen.append(c)
        if len(chosen) == limit:
            break
    return sorted(chosen)


def plot_confusion(confmat: torch.Tensor, names: Sequence[str], path: Path) -> Path:
    """The row-normalised matrix of ``shown_classes`` as a heat map, names on both axes."""
    plt = _pyplot()
    counts = confmat.double()
    shares = (counts / counts.sum(1, keepdim=True).clamp(min=1)).numpy()
    shown = shown_classes(confmat)
    shares = shares[np.ix_(shown, shown)]
    labels = [names[c] for c in shown]
    side = max(4.0, 0.42 * len(shown) + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(shown)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(shown)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    subset = "" if len(shown) == confmat.shape[0] else f" ({len(shown)} most confused of {confmat.shape[0]} classes)"
    ax.set_title(f"confusion, share of each true class's pixels{subset}", fontsize=9)
    if len(shown) <= MAX_MATRIX_CLASSES:
        for i in range(len(shown)):
            for j in range(len(shown)):
                if shares[i, j] >= 0.005:
                    ax.text(j, i, f"{100 * shares[i, j]:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if shares[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return _save(fig, path)


def plot_iou(names: Sequence[str], iou: Sequence[float | None], path: Path) -> Path:
    """A horizontal bar per class (IoU in percent; a class absent from labels and
    predictions, IoU undefined, is marked n/a)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, max(2.5, 0.22 * len(names) + 1.0)))
    values = [0.0 if v is None else v for v in iou]
    ax.barh(range(len(names)), values, color="#4878a8")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("IoU (%)")
    for row, value in enumerate(iou):
        ax.text(1 if value is None else value + 1, row, "n/a" if value is None else f"{value:.1f}", va="center",
                fontsize=6)
    finite = [v for v in iou if v is not None]
    mean = f"mIoU {sum(finite) / len(finite):.2f}" if finite else "mIoU n/a"
    ax.set_title(f"per-class IoU ({mean})", fontsize=9)
    return _save(fig, path)


def write_csv(confmat: torch.Tensor, names: Sequence[str], iou: Sequence[float | None],
              acc: Sequence[float | None], path: Path) -> Path:
    """One row per class: index, name, IoU, Acc (percent, empty when undefined), labelled
    pixels, then the pixels of that class predicted as each class (``pred:NAME`` columns)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["index", "class", "IoU", "Acc", "pixels", *(f"pred:{name}" for name in names)])
    for k, name in enumerate(names):
        row = confmat[k].tolist()
        writer.writerow([k, name, "" if iou[k] is None else iou[k], "" if acc[k] is None else acc[k], sum(row), *row])
    text = buffer.getvalue()
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8", newline=""))
    return path


def write_plots(out_dir: str | Path, confmat: torch.Tensor, names: Sequence[str], iou: Sequence[float | None],
                acc: Sequence[float | None]) -> list[Path]:
    """``confusion.png``, ``iou.png`` and ``per_class.csv`` into ``out_dir`` (created),
    each written atomically. ``iou`` and ``acc``: per class, in percent (None: undefined)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    confmat = confmat.long().cpu()
    return [plot_confusion(confmat, names, out_dir / CONFUSION_FILE), plot_iou(names, iou, out_dir / IOU_FILE),
            write_csv(confmat, names, iou, acc, out_dir / CSV_FILE)]
