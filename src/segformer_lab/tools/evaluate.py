"""``segformer-lab eval``: mIoU, mAcc, aAcc and per-class scores of a checkpoint (or of an
exported ``.onnx`` file, in onnxruntime) on a dataset, with sliding-window / multi-scale /
flip inference and resolution sweeps.

Images are prepared as the model's preprocessing says (``data.Preprocessing``: the run's
when the checkpoint belongs to one, else the one stored with the model or in the ONNX
file, else the defaults; ``--size``/``--scale``/``--multiple-of``/``--mode`` ... go over
it), and one line says which; the data and test-time augmentation come from the run's
config too (``engine.run_recipe``, the one reader of a run's recipe). Classes are named
as the model names them (``id2label``), else as the dataset does. The text output ends
with the five most confused class pairs; ``--plots DIR`` writes the confusion matrix, a
per-class IoU chart and a CSV (``eval_plots``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from .._io import write_json
from ..engine import dataset_view, eval_preprocessing, evaluate, load_for_eval, most_confused, augmentation_of
from ..engine.evaluation import model_classes
from ..models.labels import resolve_class_names
from ..analysis.eval_plots import require_matplotlib, write_plots
from .options import (add_onnx_arguments, add_preprocessing_arguments, non_negative_int, onnx_options,
                      positive_int_list, preprocessing_options, scale)

CONFUSED_PAIRS = 5  # listed after the per-class table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Evaluate a run directory, a run's .ckpt, any checkpoint load_model reads or an exported .onnx file "
        "(in onnxruntime, with the same preprocessing, inference and metrics). Scores are "
        "mmseg's (one confusion matrix over the set; nanmean over classes). Predictions are upsampled to "
        "the original label size."
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN", help="run directory, checkpoint path, or Hugging Face "
                   "Hub id owner/name[@revision] (from huggingface_hub's cache; a local path wins)")
    p.add_argument("--data", metavar="FORMAT:ROOT", help="dataset, e.g. ade20k:/data/ADEChallengeData2016 "
                   "(formats: ade20k, parquet, folder; default: the run's)")
    p.add_argument("--split", help="split (default: the run's validation split, else validation)")
    add_preprocessing_arguments(p)
    p.add_argument("--scales", type=scale, nargs="+", metavar="S", help="test scales, averaged (e.g. 0.5 0.75 1.0 "
                   "1.25 1.5 1.75)")
    p.add_argument("--flip", action="store_true", default=None, help="add horizontally flipped inputs")
    p.add_argument("--sizes", type=positive_int_list, metavar="S1,S2,...",
                   help="resolution sweep: resize each image so its short side is each size (images are read "
                   "unresized; labels stay at their original size)")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    p.add_argument("--plots", metavar="DIR", help="also write DIR/confusion.png (row-normalised; the most confused "
                   "classes when there are many), DIR/iou.png and DIR/per_class.csv (needs matplotlib)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--num-workers", type=non_negative_int, default=2, help="data loading processes (default 2)")
    p.add_argument("--skip-bad", action="store_true", help="leave unreadable samples out instead of failing")
    add_onnx_arguments(p)


def percent(value: torch.Tensor | float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(100 * value, 4)


def report(scores: dict[str, torch.Tensor], class_names: list[str], size: int | None) -> dict[str, Any]:
    """JSON-ready results in percent (NaN -> null: a class absent from labels and predictions)."""
    per_class = {name: {"IoU": percent(iou), "Acc": percent(acc)}
                 for name, iou, acc in zip(class_names, scores["IoU"], scores["Acc"])}
    return {"size": size, **{k: percent(scores[k]) for k in ("mIoU", "mAcc", "aAcc")}, "per_class": per_class}


def show(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def confused_lines(confmat: torch.Tensor, names: list[str], n: int = CONFUSED_PAIRS) -> list[str]:
    """The ``n`` most confused pairs, one line each: ``true -> predicted: share of true's pixels (pixels)``."""
    pairs = most_confused(confmat, n)
    if not pairs:
        return ["most confused: none (every labelled pixel predicted right)"]
    return ["most confused (ground truth -> predicted, share of its pixels):"] + [
        f"  {names[t]} -> {names[p]}: {100 * share:.2f}% ({pixels} px)" for t, p, pixels, share in pairs]


def print_table(row: dict[str, Any], scores: dict[str, torch.Tensor], names: list[str]) -> None:
    """Per class IoU and Acc, the means, and the most confused pairs (from the matrix the
    scores come from)."""
    width = max(len(n) for n in names)
    print(f"{'class':<{width}} {'IoU':>7} {'Acc':>7}")
    for name, iou, acc in zip(names, scores["IoU"], scores["Acc"]):
        print(f"{name:<{width}} {show(percent(iou)):>7} {show(percent(acc)):>7}")
    print(f"mIoU {show(row['mIoU'])}  mAcc {show(row['mAcc'])}  aAcc {show(row['aAcc'])}")
    print("\n".join(confused_lines(scores["confmat"], names)))


def run(args: argparse.Namespace) -> int:
    if args.plots:
        if args.sizes:
            raise ValueError("--plots describes one evaluation: leave out --sizes")
        require_matplotlib()
    model, recipe = load_for_eval(args.checkpoint, **onnx_options(args))
    num_classes, own_names = model_classes(model)
    preprocessing, line = eval_preprocessing(model, recipe, str(args.checkpoint), **preprocessing_options(args))
    if args.data:
        fmt, sep, root = args.data.partition(":")
        if not sep or not root:
            raise ValueError(f"--data must be FORMAT:ROOT, got {args.data!r}")
    elif recipe is None:
        raise ValueError("--data FORMAT:ROOT is needed for a checkpoint outside a run directory")
    else:
        fmt, root = recipe.data
    split = args.split or (recipe.split("val") if recipe and not args.data else "validation")
    # a sweep reads the images at their own size and resizes them to each short side
    view = preprocessing.at_own_size() if args.sizes else preprocessing
    dataset = dataset_view((fmt, root), split, view, num_classes, args.skip_bad, recipe)
    tta = augmentation_of(recipe)
    inference = {**preprocessing.inference, **{key: tta[key] if getattr(args, key) is None else getattr(args, key)
                                               for key in tta}}
    print(line)
    results = evaluate(model, dataset, sizes=args.sizes, device=args.device, num_workers=args.num_workers,
                       preprocessing=preprocessing, **inference)
    names = resolve_class_names(own_names or getattr(dataset, "classes", None) or None, num_classes,
                                str(args.checkpoint))
    rows = [report(scores, names, size) for size, scores in results.items()]

    print(f"{args.checkpoint} on {fmt}:{root} [{split}], {len(dataset)} images, "
          + ", ".join(f"{k}={v}" for k, v in inference.items()))
    if args.sizes:
        print(f"{'short side':>10} {'mIoU':>7} {'mAcc':>7} {'aAcc':>7}")
        for row in rows:
            print(f"{row['size']:>10} {show(row['mIoU']):>7} {show(row['mAcc']):>7} {show(row['aAcc']):>7}")
    else:
        print_table(rows[0], results[None], names)
        if args.plots:
            scores = results[None]
            written = write_plots(args.plots, scores["confmat"], names, [percent(v) for v in scores["IoU"]],
                                  [percent(v) for v in scores["Acc"]])
            print(f"plots: {', '.join(str(p) for p in written)}")
    if args.json:
        out = {"checkpoint": str(args.checkpoint), "data": {"format": fmt, "root": str(root), "split": split},
               "preprocessing": preprocessing.to_dict(), "inference": inference, "results": rows}
        write_json(Path(args.json), out)
    return 0
