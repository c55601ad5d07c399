"""The accuracy report of ``export --report``: the PyTorch float32 model against its exported
ONNX files (float32, float16, int8: whichever are given) on a dataset.

Per file: the mIoU (``engine.evaluate``, the code ``eval`` runs, so the number is the one
``eval FILE.onnx`` prints), the largest absolute difference of the class scores from
PyTorch's and the share of pixels whose argmax agrees with PyTorch's (both at the label
size, with the same inference settings), and the latency of one ``1 x 3 x H x W`` input
in onnxruntime on this machine, timed in turns with PyTorch eager
(``timing.time_in_turns``; the ratios are medians of per-round ratios to the float32
file, or to PyTorch when there is none).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..data import Preprocessing, collate
from ..engine import RunRecipe, augmentation_of, dataset_view, evaluate
from ..export import logit_agreement
from ..inference import OnnxModel, optimize_for_inference, predict_logits
from ..models import SegmentationModel
from .timing import relative_rows, time_in_turns

PYTORCH = "pytorch"


def report_data(data: tuple[str, str], recipe: RunRecipe | None, preprocessing: Preprocessing, num_classes: int
                ) -> tuple[Dataset, dict[str, Any]]:
    """The validation split of ``data`` as ``eval`` scores it: through ``preprocessing``
    (the model's: ``engine.eval_preprocessing``) with the run's dataset options, and the
    inference settings (with the run's test-time augmentation, if any)."""
    split = recipe.split("val") if recipe is not None else "validation"
    dataset = dataset_view(data, split, preprocessing, num_classes, recipe=recipe)
    return dataset, {**preprocessing.inference, **augmentation_of(recipe)}


@torch.no_grad()
def agreement(model: SegmentationModel, files: Sequence[OnnxModel], dataset: Dataset,
              inference: dict[str, Any]) -> list[dict[str, float]]:
    """Per file, over ``dataset``: ``max_abs_diff`` of the scores at the label size from
    the model's, and ``agreement``, the share of label-size pixels with the same argmax."""
    stats = [{"max_abs_diff": 0.0, "same": 0, "pixels": 0} for _ in files]
    for batch in DataLoader(dataset, batch_size=1, collate_fn=collate):
        x, size = batch["pixel_values"], batch["labels"].shape[-2:]
        expected = predict_logits(model, x, size, **inference)
        pixels = expected[:, 0].numel()
        for file, stat in zip(files, stats):
            diff, agree = logit_agreement(predict_logits(file, x, size, **inference), expected)
            stat["max_abs_diff"] = max(stat["max_abs_diff"], diff)
            stat["same"] += agree * pixels
            stat["pixels"] += pixels
    return [{"max_abs_diff": s["max_abs_diff"], "agreement": s["same"] / max(1, s["pixels"])} for s in stats]


def latency(model: SegmentationModel, files: Sequence[OnnxModel], size: Sequence[int], repeats: int,
            warmup: int) -> tuple[dict[str, dict[str, float]], str]:
    """Median ms of one ``1 x 3 x size`` input per runner (PyTorch and each file), timed in
    turns, and each one's per-round ratio to the reference: the first float32 file, else
    PyTorch (returned too)."""
    runners: dict[str, Any] = {str(file.path): file for file in files}
    runners[PYTORCH] = optimize_for_inference(model)
    reference = next((str(f.path) for f in files if f.precision == "float32"), PYTORCH)
    ordered = {reference: runners[reference], **{k: v for k, v in runners.items() if k != reference}}
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0))
    times, _ = time_in_turns(ordered, x, warmup, repeats)
    rows = relative_rows(times, batch=1)
    return {row["model"]: {"median_ms": row["median_ms"], "relative": row["relative"]} for row in rows}, reference


def onnx_report(model: SegmentationModel, files: Sequence[OnnxModel], dataset: Dataset,
                  inference: dict[str, Any], size: Sequence[int] = (512, 512), repeats: int = 20,
                  warmup: int = 2, progress: bool = False) -> dict[str, Any]:
    """The report as JSON-ready data: ``rows`` (PyTorch first, then each file) with
    ``name``, ``precision``, ``mIoU`` (percent), ``delta_mIoU`` (points from PyTorch),
    ``max_abs_diff``, ``agreement`` (fraction), ``median_ms`` and ``relative``."""
    import onnxruntime

    num_classes = model.config.num_classes
    for file in files:
        if file.num_classes != num_classes:
            raise ValueError(f"{file.path} predicts {file.num_classes} classes, the model {num_classes}")
    model = model.eval()
    miou = [evaluate(m, dataset, device="cpu", progress=progress, **inference)[None]["mIoU"].item() * 100
            for m in (model, *files)]
    compared = agreement(model, files, dataset, inference)
    times, reference = latency(model, files, size, repeats, warmup)
    rows = [{"name": PYTORCH, "precision": "float32 (PyTorch eager)", "mIoU": miou[0], "delta_mIoU": 0.0,
             "max_abs_diff": 0.0, "agreement": 1.0, **times[PYTORCH]}]
    for file, score, stats in zip(files, miou[1:], compared):
        rows.append({"name": str(file.path), "precision": file.precision, "mIoU": score,
                     "delta_mIoU": score - miou[0], **stats, **times[str(file.path)]})
    return {"model": model.config.name, "images": len(dataset), "inference": inference,
            "latency_input": [1, 3, *size], "latency_reference": reference, "threads": torch.get_num_threads(),
            "repeats": repeats, "warmup": warmup, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "rows": rows}


def format_report(report: dict[str, Any]) -> str:
    """The report as a Markdown table, with a line saying what was measured."""
    shape = "x".join(map(str, report["latency_input"]))
    lines = [
        f"ONNX report for {report['model']} on {report['images']} images (" + ", ".join(
            f"{k}={v}" for k, v in report["inference"].items()) + f"); latency {shape}, {report['threads']} thread(s), "
        f"median of {report['repeats']} rounds in turns, relative to {report['latency_reference']}",
        "| model | precision | mIoU | Δ mIoU | max abs diff | argmax agreement | latency | relative |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["rows"]:
        miou = "-" if math.isnan(r["mIoU"]) else f"{r['mIoU']:.2f}"
        lines.append(f"| {r['name']} | {r['precision']} | {miou} | {r['delta_mIoU']:+.2f} | {r['max_abs_diff']:.2e} "
                     f"| {100 * r['agreement']:.2f}% | {r['median_ms']:.1f} ms | {r['relative']:.2f}x |")
    return "\n".join(lines)
