"""What ``segformer-lab bench`` measures: inference latency and throughput on the CPU or a GPU, in
float32, bfloat16 or float16, eager or compiled, side by side with other models or with
transformers, with the peak memory of each.

Every comparison runs its contenders in turns within one loop (``timing.time_in_turns``:
a, b, a, b, ...), so that drift on a shared machine hits all alike and their ratios stay
meaningful even when the absolute medians move. That holds for several registered
models (``bench segformer_b0 segformer_b0_rope_axial``) and for transformers'
``SegformerForSemanticSegmentation`` with the same weights (``--compare-hf``), and for
the same model exported to ONNX and run by onnxruntime on the CPU (``--onnx``, with
``--onnx-precision fp16 int8`` for those exports too), and for ONNX files of any precision
(``bench --onnx a.onnx b-int8.onnx``: each against the first).

``--train`` times training steps instead: forward, the loss on labels at the input size,
backward and an AdamW step, for our models (fused upsampled cross-entropy) and, with
``--compare-hf``, for transformers' model with its own loss on the same weights and batch.

``--device``, ``--precision`` (autocast; transformers runs under the same) and
``--compile`` apply to every contender alike; ``analysis/device.py`` checks them up front and
says what peak memory means. A contender that fails to compile is left out with one line
on stderr and the others still run; if the first one (ours, or the first model named)
fails, the run stops.
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Callable

import torch
from torch import nn

from ..data import IGNORE_INDEX
from ..engine.losses import upsampled_cross_entropy
from ..engine.optim import adamw
from ..export import logit_agreement
from ..inference import optimize_for_inference
from ..inference.devices import resolve_device
from ..models import SegmentationModel, create_model, open_model
from ..models.hub import parse_hub_id
from .onnx_timing import onnx_runner, onnx_variant_rows
from .device import (
    PRECISIONS, autocast, check_precision, compiled, environment, first_calls, in_precision, memory_note,
    peak_memory_mib, tensor_bytes,
)  # fmt: skip
from .hf_twin import hf_loss, randomise_batch_norms, transformers_twin
from .profiling import count_macs, machine_fraction, resolve_models, sgemm_runner
from .timing import relative_rows, summarise, time_in_turns, torch_threads

DEFAULT_WARMUP = 2
DEFAULT_REPEATS = 10
ONNX_PRECISIONS = ("fp16", "int8")  # exported on the fly by --onnx-precision (int8: dynamic, there is no data)


def benchmark(
    model_or_name: str | SegmentationModel,
    size: tuple[int, int] = (512, 512),
    batch: int = 1,
    threads: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    compare_hf: bool = False,
    onnx: bool = False,
    train: bool = False,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    compile: dict | None = None,
    onnx_precisions: tuple[str, ...] = (),
    num_classes: int | None = None,
) -> dict:
    """Median latency, throughput and peak memory of ``model(random batch)`` in
    eval/inference mode, as ``optimize_for_inference`` makes it (``train``: of a training
    step, see ``TrainingStep``) on ``device`` in ``precision`` (``PRECISIONS``: autocast),
    compiled with ``torch.compile(**compile)`` unless ``compile`` is None. On the CPU,
    inference adds ``machine`` (``profiling.machine_fraction``): executed GMACs, achieved
    GMAC/s and its fraction of a float32 sgemm timed in the same turns.

    With ``compare_hf`` the same weights also run in transformers (a test extra) and the
    result adds its latency, the speed-up (theirs / ours) and the largest absolute logit
    difference. With ``onnx`` the model is exported to ONNX (opset 18, static shape of the
    timed input, float32) and onnxruntime (CPU, as many threads as torch) runs it in the
    same turns; the result adds its latency, ``onnx_speedup`` (PyTorch / onnxruntime) and
    ``onnx_max_abs_diff``; each of ``onnx_precisions`` (``ONNX_PRECISIONS``, implies
    ``onnx``) adds an export in that precision to the turns, reported under
    ``onnx_variants`` against the float32 file (``onnx_variant_rows``). With ``train`` and ``compare_hf`` the result has ``loss_abs_diff``:
    the two losses on the same batch in eval mode (no dropout) before any step. A model
    built here from a name gets random BatchNorm statistics first; a model passed in keeps
    its weights (it is switched to eval mode; ``train`` or another device works on a copy).
    ``threads`` applies for this call only. Every contender is called once, untimed, before
    the ``warmup`` rounds (compilation happens there), and once more after the timed
    rounds for its peak memory (``peak_memory_mib``). ``num_classes`` builds a registered
    model with that many classes instead of its default (a checkpoint has its own).
    """
    _check_counts(batch, repeats, warmup)
    onnx = onnx or bool(onnx_precisions)
    if train and onnx:
        raise ValueError("--onnx times inference only; it does not combine with --train")
    device = resolve_device(device)
    if onnx and (device.type != "cpu" or precision != "fp32" or compile is not None):
        raise ValueError("--onnx compares onnxruntime with float32 eager PyTorch on the CPU: "
                         "leave out --device cuda, --precision and --compile")  # fmt: skip
    check_precision(device, precision)
    if isinstance(model_or_name, str):
        model = create_model(model_or_name, **classes_override(num_classes))
        if compare_hf or onnx:
            randomise_batch_norms(model)
    elif num_classes is not None:
        raise ValueError("--num-classes builds a registered model; a checkpoint keeps its own classes")
    else:
        on_device = next(model_or_name.parameters()).device == device
        model = copy.deepcopy(model_or_name) if train or not on_device else model_or_name
    model.eval()
    with torch_threads(threads):
        shape = (batch, model.config.in_channels, *size)
        pixel_values, labels = (t.to(device) for t in random_batch(shape, model.config.num_classes))
        twin = transformers_twin(model).to(device) if compare_hf else None
        model.to(device)
        owners: dict[str, tuple[nn.Module, ...]] = {"ours": (model,)}
        runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        if train:
            if twin is not None:
                with torch.no_grad(), autocast(device, precision):
                    loss_abs_diff = abs(our_loss(model, pixel_values, labels) - hf_loss(twin, pixel_values, labels))
            runners["ours"] = ours = TrainingStep(compiled(model, compile), labels, precision=precision)
            owners["ours"] = (model, ours.optimizer)
            if twin is not None:
                runners["transformers"] = theirs = TrainingStep(compiled(twin, compile), labels, hf_loss, precision)
                owners["transformers"] = (twin, theirs.optimizer)
        else:
            fast = optimize_for_inference(model)
            runners["ours"] = in_precision(compiled(fast, compile), device, precision)
            owners["ours"] = (fast,)
            if twin is not None:
                twin_run = compiled(twin, compile)
                runners["transformers"] = in_precision(lambda x: twin_run(pixel_values=x).logits, device, precision)
                owners["transformers"] = (twin,)
        if device.type == "cpu" and not train:  # the machine's reference rate, in the same turns
            runners["sgemm"] = sgemm_runner()
        with tempfile.TemporaryDirectory() as directory:
            if onnx:
                runners["onnxruntime"] = onnx_runner(model, shape, directory)
            for onnx_precision in onnx_precisions:
                runners[f"onnxruntime-{onnx_precision}"] = onnx_runner(model, shape, directory, onnx_precision)
            runners, failed = first_calls(runners, pixel_values, compile is not None, inference=not train)
            times, outputs = time_in_turns(runners, pixel_values, warmup, repeats, train, device)
            memory = {name: peak_memory_mib(run, pixel_values, device, tensor_bytes(*owners[name]), not train)
                      for name, run in runners.items() if name in owners}  # fmt: skip
        result = {
            "model": model.config.name,
            "mode": "train" if train else "inference",
            "input": list(shape),
            "num_classes": model.config.num_classes,
            "threads": torch.get_num_threads(),
            "warmup": warmup,
            "repeats": repeats,
            **environment(device, precision, compile),
            "memory": memory_note(device),
            "ours": {**summarise(times["ours"], batch), "peak_memory_mib": memory["ours"]},
        }
    if failed:
        result["left_out"] = failed
    if "sgemm" in times:
        macs = count_macs(model.config, size).total * batch
        result["machine"] = machine_fraction(macs, result["ours"]["median_ms"], summarise(times["sgemm"], 1)["median_ms"])
    if compare_hf and "transformers" in times:
        import transformers

        result["transformers"] = {**summarise(times["transformers"], batch), "peak_memory_mib": memory["transformers"],
                                  "version": transformers.__version__}  # fmt: skip
        result["speedup"] = result["transformers"]["median_ms"] / result["ours"]["median_ms"]
        result["memory_ratio"] = _ratio(memory["ours"], memory["transformers"])
        if train:
            result["loss_abs_diff"] = loss_abs_diff.item()
        else:
            result["max_abs_diff"] = logit_agreement(outputs["ours"], outputs["transformers"])[0]
    if onnx:
        import onnxruntime

        result["onnxruntime"] = {**summarise(times["onnxruntime"], batch), "version": onnxruntime.__version__}
        result["onnx_speedup"] = result["ours"]["median_ms"] / result["onnxruntime"]["median_ms"]
        result["onnx_max_abs_diff"] = logit_agreement(outputs["ours"], outputs["onnxruntime"])[0]
    if onnx_precisions:
        names = ["onnxruntime", *(f"onnxruntime-{p}" for p in onnx_precisions)]
        rows = onnx_variant_rows({n: times[n] for n in names}, {n: outputs[n] for n in names}, batch)
        result["onnx_variants"] = {p: row for p, row in zip(onnx_precisions, rows[1:])}
    return result


def compare_models(
    names: list[str],
    size: tuple[int, int] = (512, 512),
    batch: int = 1,
    threads: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    train: bool = False,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    compile: dict | None = None,
    num_classes: int | None = None,
) -> dict:
    """Median latency (``train``: training-step time) and peak memory of several
    registered models timed in turns, each relative to the first (see ``relative_rows``);
    ``device``, ``precision``, ``compile`` and ``num_classes`` as for ``benchmark``. A
    model that fails to compile is left out (``left_out``) unless it is the first."""
    _check_counts(batch, repeats, warmup)
    device = resolve_device(device)
    check_precision(device, precision)
    models = {name: create_model(name, **classes_override(num_classes)).train(train).to(device) for name in names}
    with torch_threads(threads):
        shape = (batch, 3, *size)
        pixel_values, labels = (t.to(device) for t in random_batch(shape, min(m.config.num_classes for m in models.values())))
        if train:
            steps = {name: TrainingStep(compiled(m, compile), labels, precision=precision) for name, m in models.items()}
            owners = {name: (models[name], step.optimizer) for name, step in steps.items()}
            runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = dict(steps)
        else:
            models = {name: optimize_for_inference(m) for name, m in models.items()}
            runners = {name: in_precision(compiled(m, compile), device, precision) for name, m in models.items()}
            owners = {name: (m,) for name, m in models.items()}
        runners, failed = first_calls(runners, pixel_values, compile is not None, inference=not train)
        times, _ = time_in_turns(runners, pixel_values, warmup, repeats, train, device)
        rows = relative_rows(times, batch)
        for row in rows:
            row["peak_memory_mib"] = peak_memory_mib(runners[row["model"]], pixel_values, device,
                                                     tensor_bytes(*owners[row["model"]]), not train)  # fmt: skip
        threads_used = torch.get_num_threads()
    return {
        "mode": "train" if train else "inference", "input": list(shape), "threads": threads_used,
        "num_classes": {name: m.config.num_classes for name, m in models.items()},
        "warmup": warmup, "repeats": repeats, **environment(device, precision, compile),
        "memory": memory_note(device), "models": rows, **({"left_out": failed} if failed else {}),
    }  # fmt: skip


def classes_override(num_classes: int | None) -> dict:
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"--num-classes must be at least 1, got {num_classes}")
    return {} if num_classes is None else {"num_classes": num_classes}


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def _check_counts(batch: int, repeats: int, warmup: int) -> None:
    if batch < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch >= 1, repeats >= 1, warmup >= 0; got {batch}, {repeats}, {warmup}")


def random_batch(shape: tuple[int, ...], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random images ``shape`` and labels at their size (10% ignored)."""
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(shape, generator=generator)
    labels = torch.randint(0, num_classes, (shape[0], *shape[2:]), generator=generator)
    labels[torch.rand(labels.shape, generator=generator) < 0.1] = IGNORE_INDEX
    return pixel_values, labels


def our_loss(model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The engine's loss: cross-entropy of the logits upsampled to the labels (fused)."""
    return upsampled_cross_entropy(model(pixel_values), labels)


class TrainingStep:
    """A callable doing one training step on ``(pixel_values, labels)``: forward and loss
    (under autocast in ``precision``), backward, AdamW step (lr 6e-5, the SegFormer
    recipe; float16 through a gradient scaler). Returns the loss, detached. Switches
    ``model`` to training mode (dropout, drop path, BatchNorm statistics)."""

    def __init__(self, model: nn.Module, labels: torch.Tensor, loss_fn: Callable[..., torch.Tensor] = our_loss,
                 precision: str = "fp32") -> None:  # fmt: skip
        self.model, self.labels, self.loss_fn, self.precision = model.train(), labels, loss_fn, precision
        self.optimizer = adamw(model.parameters(), lr=6e-5)
        self.scaler = torch.amp.GradScaler(labels.device.type) if PRECISIONS[precision] is torch.float16 else None

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(pixel_values.device, self.precision):
            loss = self.loss_fn(self.model, pixel_values, self.labels)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return loss.detach()


def resolve_targets(tokens: list[str]) -> list[str] | list[SegmentationModel]:
    """Registered names and patterns (``resolve_models``), or one checkpoint, timed with its
    own weights: an existing path or a Hub id (``open_model``; a local path wins)."""
    if len(tokens) == 1 and (os.path.exists(tokens[0]) or parse_hub_id(tokens[0]) is not None):
        return [open_model(tokens[0])]
    return resolve_models(tokens)
