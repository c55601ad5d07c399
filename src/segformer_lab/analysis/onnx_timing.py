"""``bench --onnx FILE ...``: ONNX files of any precision timed in turns in onnxruntime
(CPU), each against the first, with the argmax agreement and the largest logit
difference; and for ``bench MODEL --onnx [--onnx-precision fp16 int8]``, the model
exported on the fly (``onnx_runner``) and the rows it reports."""

from __future__ import annotations

import json
import os
import statistics
from typing import Callable

import torch

from ..export import OnnxRunner, export_int8, export_onnx, logit_agreement, require_export_packages
from ..models import SegmentationModel
from .timing import relative_rows, time_in_turns, torch_threads


def onnx_runner(
    model: SegmentationModel, shape: tuple[int, ...], directory: str, precision: str = "float32"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` exported to ``directory`` at the static input ``shape`` (int8: dynamic
    shapes, dynamic quantisation) and loaded in an onnxruntime CPU session with torch's
    thread count: a callable like the model."""
    require_export_packages()
    path = os.path.join(directory, f"model-{precision}.onnx")
    if precision == "int8":
        export_int8(model, path, check=False)
    else:
        export_onnx(model, path, static_size=shape[2:], batch=shape[0], fp16=precision == "fp16", check=False)
    return OnnxRunner(path, threads=torch.get_num_threads())


def onnx_variant_rows(times: dict[str, list[float]], outputs: dict[str, torch.Tensor], batch: int) -> list[dict]:
    """``relative_rows`` of ONNX runners timed in turns, each against the first, plus
    ``speedup`` (the first's time over this one's: median of per-round ratios), the max
    abs logit difference and the argmax agreement with the first's output."""
    rows = relative_rows(times, batch)
    reference, first_times = outputs[rows[0]["model"]], times[rows[0]["model"]]
    for row in rows:
        row["speedup"] = statistics.median(f / t for f, t in zip(first_times, times[row["model"]]))
        row["max_abs_diff"], row["argmax_agreement"] = logit_agreement(outputs[row["model"]], reference)
    return rows


def compare_onnx_files(
    paths: list[str], size: tuple[int, int], batch: int, threads: int | None, warmup: int, repeats: int
) -> dict:
    """ONNX files of any precision (float32, fp16, int8) timed in turns on the same random
    input, each against the first (``onnx_variant_rows``)."""
    if batch < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch >= 1, repeats >= 1, warmup >= 0; got {batch}, {repeats}, {warmup}")
    require_export_packages()
    import onnxruntime

    with torch_threads(threads):
        runners = {str(path): _open(path, (batch, 3, *size)) for path in paths}
        pixel_values = torch.randn((batch, 3, *size), generator=torch.Generator().manual_seed(0))
        _check_outputs({path: runner(pixel_values) for path, runner in runners.items()})
        times, outputs = time_in_turns(runners, pixel_values, warmup, repeats)
        threads_used = torch.get_num_threads()
    return {
        "mode": "inference", "input": [batch, 3, *size], "threads": threads_used, "warmup": warmup,
        "repeats": repeats, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__,
        "models": onnx_variant_rows(times, outputs, batch),
    }  # fmt: skip


def _open(path: str | os.PathLike, shape: tuple[int, ...]) -> OnnxRunner:
    """``path`` in a session (``OnnxRunner``: a file onnxruntime cannot load is one line),
    refused in one line when its input is fixed at another shape than the one to time
    (naming the options that match)."""
    runner = OnnxRunner(path, threads=torch.get_num_threads())
    fixed = runner.input.shape
    if len(fixed) != 4:
        raise ValueError(f"{path}: takes an input of rank {len(fixed)}, not an image batch [batch, 3, height, width]")
    wrong = [(name, want, have) for name, want, have in zip(("batch", "channels", "height", "width"), fixed, shape)
             if isinstance(want, int) and want != have]
    if wrong:
        needed = {name: want for name, want, _ in wrong}
        options = [f"--batch {needed['batch']}"] if "batch" in needed else []
        if "height" in needed or "width" in needed:
            options.append(f"--size {fixed[2]} {fixed[3]}")
        raise ValueError(f"{path} takes a fixed input {list(fixed)}, not {list(shape)}: time it with "
                         f"{' '.join(options) or 'a 3-channel input'} (or export it with dynamic shapes)")
    return runner


def _check_outputs(outputs: dict[str, torch.Tensor]) -> None:
    """Files compared in turns must give logits of one shape: the same classes, the same stride."""
    (first, reference), *others = outputs.items()
    for path, output in others:
        if output.shape[1] != reference.shape[1]:
            raise ValueError(f"{path} has {output.shape[1]} classes and {first} {reference.shape[1]}: files timed "
                             "against each other must be exports of models with the same classes")
        if output.shape != reference.shape:
            raise ValueError(f"{path} returns logits {list(output.shape)} and {first} {list(reference.shape)}: "
                             "not exports of the same kind of model")


def print_onnx_files(result: dict, as_json: bool) -> int:
    """``compare_onnx_files``' table: median, speed-up over the first file, agreement with it."""
    if as_json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"input {'x'.join(map(str, result['input']))}, {result['threads']} threads, onnxruntime "
          f"{result['onnxruntime']} (CPU): median of {result['repeats']} rounds after {result['warmup']} warm-up, "
          "files timed in turns; speed-up = median over rounds of (first / this)")  # fmt: skip
    width = max(len(r["model"]) for r in result["models"])
    print(f"  {'file':<{width}} {'median ms':>10} {'speed-up':>9} {'argmax agree':>13} {'max |diff|':>11}")
    for r in result["models"]:
        print(f"  {r['model']:<{width}} {r['median_ms']:>10.1f} {r['speedup']:>8.2f}x "
              f"{100 * r['argmax_agreement']:>12.2f}% {r['max_abs_diff']:>11.3g}")
    return 0
