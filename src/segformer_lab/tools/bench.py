"""``segformer-lab bench``: CPU inference latency, side by side with other models or
with transformers.

Every comparison runs its contenders in turns within one loop (``timing.time_in_turns``:
a, b, a, b, ...), so that drift on a shared machine hits all alike and their ratios stay
meaningful even when the absolute medians move. That holds for several registered
models (``bench segformer_b0 segformer_b0_rope_axial``) and for transformers'
``SegformerForSemanticSegmentation`` with the same weights (``--compare-hf``), and for
the same model exported to ONNX and run by onnxruntime on the CPU (``--onnx``).

``--train`` times training steps instead: forward, the loss on labels at the input size,
backward and an AdamW step, for our models (fused upsampled cross-entropy) and, with
``--compare-hf``, for transformers' model with its own loss on the same weights and batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
from typing import Callable

import torch
from torch import nn

from ..data import IGNORE_INDEX
from ..engine.losses import upsampled_cross_entropy
from ..export import export_onnx, onnx_session, require_export_packages
from ..models import SegmentationModel, create_model, open_model, save_transformers
from ..models.hub import parse_hub_id
from .bench_data import print_data_result, run_data_bench
from .profile import resolve_models
from .timing import print_comparison, relative_rows, summarise, time_in_turns, torch_threads

DEFAULT_WARMUP = 2
DEFAULT_REPEATS = 10
DEFAULT_DATA_SAMPLES = 48


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
) -> dict:
    """Median latency and throughput of ``model(random batch)`` in eval/inference mode
    (``train``: of a training step, see ``training_step``).

    With ``compare_hf`` the same weights also run in transformers (a test extra) and the
    result adds its latency, the speed-up (theirs / ours) and the largest absolute logit
    difference. With ``onnx`` the model is exported to ONNX (opset 18, static shape of the
    timed input, float32) and onnxruntime (CPU, as many threads as torch) runs it in the
    same turns; the result adds its latency, ``onnx_speedup`` (PyTorch / onnxruntime) and
    ``onnx_max_abs_diff``. With ``train`` and ``compare_hf`` the result has ``loss_abs_diff``:
    the two losses on the same batch in eval mode (no dropout) before any step. A model
    built here from a name gets random BatchNorm statistics first; a model passed in keeps
    its weights (it is switched to eval mode; ``train`` steps a copy). ``threads`` applies
    for this call only.
    """
    _check_counts(batch, repeats, warmup)
    if train and onnx:
        raise ValueError("--onnx times inference only; it does not combine with --train")
    if isinstance(model_or_name, str):
        model = create_model(model_or_name)
        if compare_hf or onnx:
            randomise_batch_norms(model)
    else:
        model = copy.deepcopy(model_or_name) if train else model_or_name
    model.eval()
    with torch_threads(threads):
        shape = (batch, model.config.in_channels, *size)
        pixel_values, labels = random_batch(shape, model.config.num_classes)
        twin = transformers_twin(model) if compare_hf else None
        runners: dict[str, Callable[[torch.Tensor], torch.Tensor]]
        if train:
            if twin is not None:
                with torch.no_grad():
                    loss_abs_diff = abs(our_loss(model, pixel_values, labels) - hf_loss(twin, pixel_values, labels))
            runners = {"ours": training_step(model, labels)}
            if twin is not None:
                runners["transformers"] = training_step(twin, labels, hf_loss)
        else:
            runners = {"ours": model}
            if twin is not None:
                runners["transformers"] = lambda x: twin(pixel_values=x).logits
        with tempfile.TemporaryDirectory() as directory:
            if onnx:
                runners["onnxruntime"] = onnx_runner(model, shape, directory)
            times, outputs = time_in_turns(runners, pixel_values, warmup, repeats, train)
        result = {
            "model": model.config.name,
            "mode": "train" if train else "inference",
            "input": list(shape),
            "threads": torch.get_num_threads(),
            "warmup": warmup,
            "repeats": repeats,
            "torch": torch.__version__,
            "ours": summarise(times["ours"], batch),
        }
    if compare_hf:
        import transformers

        result["transformers"] = {**summarise(times["transformers"], batch), "version": transformers.__version__}
        result["speedup"] = result["transformers"]["median_ms"] / result["ours"]["median_ms"]
        if train:
            result["loss_abs_diff"] = loss_abs_diff.item()
        else:
            result["max_abs_diff"] = (outputs["ours"] - outputs["transformers"]).abs().max().item()
    if onnx:
        import onnxruntime

        result["onnxruntime"] = {**summarise(times["onnxruntime"], batch), "version": onnxruntime.__version__}
        result["onnx_speedup"] = result["ours"]["median_ms"] / result["onnxruntime"]["median_ms"]
        result["onnx_max_abs_diff"] = (outputs["ours"] - outputs["onnxruntime"]).abs().max().item()
    return result


def onnx_runner(
    model: SegmentationModel, shape: tuple[int, ...], directory: str
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model`` exported to ``directory`` at the static input ``shape`` and loaded in an
    onnxruntime CPU session with torch's thread count: a callable like the model."""
    require_export_packages()
    path = os.path.join(directory, "model.onnx")
    export_onnx(model, path, static_size=shape[2:], batch=shape[0], check=False)
    session = onnx_session(path, threads=torch.get_num_threads())
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def compare_models(
    names: list[str],
    size: tuple[int, int] = (512, 512),
    batch: int = 1,
    threads: int | None = None,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    train: bool = False,
) -> dict:
    """Median latency (``train``: training-step time) of several registered models timed
    in turns, each relative to the first (see ``relative_rows``)."""
    _check_counts(batch, repeats, warmup)
    models = {name: create_model(name).train(train) for name in names}
    with torch_threads(threads):
        shape = (batch, 3, *size)
        pixel_values, labels = random_batch(shape, min(m.config.num_classes for m in models.values()))
        runners = {name: training_step(m, labels) for name, m in models.items()} if train else models
        times, _ = time_in_turns(runners, pixel_values, warmup, repeats, train)
        threads_used = torch.get_num_threads()
    return {
        "mode": "train" if train else "inference", "input": list(shape), "threads": threads_used,
        "warmup": warmup, "repeats": repeats, "torch": torch.__version__, "models": relative_rows(times, batch),
    }  # fmt: skip


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


def hf_loss(twin: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """transformers' own loss: its logits upsampled to the labels, cross-entropy ignoring 255."""
    return twin(pixel_values=pixel_values, labels=labels).loss


def training_step(
    model: nn.Module, labels: torch.Tensor, loss_fn: Callable[..., torch.Tensor] = our_loss
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable doing one training step on ``(pixel_values, labels)``: forward, loss,
    backward, AdamW step (lr 6e-5, the SegFormer recipe). Returns the loss, detached.
    Switches ``model`` to training mode (dropout, drop path, BatchNorm statistics)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-5)

    def step(pixel_values: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, pixel_values, labels)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


@torch.no_grad()
def randomise_batch_norms(model: nn.Module, seed: int = 0) -> None:
    """Random running statistics and affine for every BatchNorm. A fresh BatchNorm
    (mean 0, variance 1, identity affine) is nearly the identity in eval mode, which would
    hide a mistake in folding it into the decoder's projections."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
            module.weight.uniform_(0.5, 1.5, generator=generator)
            module.bias.normal_(0.0, 0.5, generator=generator)


def transformers_twin(model: SegmentationModel) -> nn.Module:
    """transformers' ``SegformerForSemanticSegmentation`` holding ``model``'s weights.

    The weights travel the way an exported checkpoint does: ``save_transformers`` writes
    the directory, ``from_pretrained`` reads it (applying transformers' own key
    conversions). Any key it misses or does not use is an error.
    """
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "comparing with transformers needs the transformers package (a test extra): "
            "pip install 'segformer-lab[test]'"
        ) from err

    progress_bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory() as directory:
            save_transformers(model, directory)
            twin, info = transformers.SegformerForSemanticSegmentation.from_pretrained(
                directory, output_loading_info=True
            )
    finally:
        if progress_bar_was_on:
            hf_logging.enable_progress_bar()
    problems = {kind: sorted(map(str, items)) for kind, items in info.items() if items}
    if problems:
        raise ValueError(f"transformers did not take the weights cleanly: {problems}")
    return twin.eval()


def resolve_targets(tokens: list[str]) -> list[str] | list[SegmentationModel]:
    """Registered names and patterns (``resolve_models``), or one checkpoint, timed with its
    own weights: an existing path or a Hub id (``open_model``; a local path wins)."""
    if len(tokens) == 1 and (os.path.exists(tokens[0]) or parse_hub_id(tokens[0]) is not None):
        return [open_model(tokens[0])]
    return resolve_models(tokens)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Median latency and throughput of a model on random input (eval mode, inference_mode, "
        "CPU). With --compare-hf, transformers' SegFormer runs the same weights in turns with ours. With "
        "--train, training steps (forward, loss, backward, AdamW step) are timed instead."
    )
    p.add_argument(
        "models", nargs="*", metavar="MODEL",
        help="registered model name; several names or shell patterns are timed in turns and compared with the first; "
             "or one checkpoint: a path or a Hugging Face Hub id, owner/name[@revision]",
    )  # fmt: skip
    p.add_argument(
        "--size", nargs=2, type=int, default=(512, 512), metavar=("H", "W"), help="input size (default: 512 512)"
    )
    p.add_argument("--batch", type=int, default=1, metavar="N", help="images per forward pass (default: 1)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch.set_num_threads (default: torch's)")
    p.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, metavar="N", help=f"untimed rounds (default: {DEFAULT_WARMUP})"
    )
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help=f"timed rounds (default: {DEFAULT_REPEATS}); with --data timed samples (default: "
                        f"{DEFAULT_DATA_SAMPLES})")  # fmt: skip
    p.add_argument("--compare-hf", action="store_true", help="also time transformers' SegFormer with the same weights")
    p.add_argument("--onnx", action="store_true",
                   help="also time the model exported to ONNX in onnxruntime (CPU), in turns with PyTorch eager")
    p.add_argument("--train", action="store_true",
                   help="time training steps on random labels at the input size (training mode, AdamW)")
    p.add_argument("--data", nargs="?", const="synthetic", default=None, metavar="SOURCE",
                   help="instead of a model, time the training data pipeline per worker: 'synthetic' (default: an "
                        "ADE20K-like tree written to a temporary directory) or FORMAT:PATH, e.g. ade20k:/data/ADE")
    p.add_argument("--pipeline", default="segformer_ade", metavar="NAME",
                   help="transform pipeline for --data (default: segformer_ade, the ADE20K 512 recipe)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    if args.data is not None:
        if args.models:
            raise ValueError("--data times the data pipeline; give no model with it")
        result = run_data_bench(args.data, args.pipeline, args.repeats or DEFAULT_DATA_SAMPLES, args.warmup)
        print(json.dumps(result, indent=2)) if args.json else print_data_result(result)
        return 0
    if not args.models:
        raise ValueError("give at least one MODEL (or --data)")
    args.repeats = args.repeats or DEFAULT_REPEATS
    names = resolve_targets(args.models)
    if len(names) > 1:
        if args.compare_hf or args.onnx:
            raise ValueError("--compare-hf and --onnx take one model")
        return print_comparison(compare_models(names, tuple(args.size), args.batch, args.threads, args.warmup,
                                               args.repeats, args.train), args.json)  # fmt: skip
    try:
        result = benchmark(
            names[0], tuple(args.size), args.batch, args.threads, args.warmup, args.repeats, args.compare_hf,
            args.onnx, args.train,
        )
    except ModuleNotFoundError as err:
        print(f"segformer-lab {args.command}: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    shape = "x".join(map(str, result["input"]))
    what = "training steps" if args.train else "runs"
    print(
        f"{result['model']}, input {shape}, {result['threads']} threads, torch {result['torch']}: "
        f"median of {result['repeats']} {what} after {result['warmup']} warm-up"
    )
    ours = result["ours"]
    print(f"  segformer-lab  {ours['median_ms']:9.1f} ms  {ours['images_per_s']:8.2f} img/s")
    if args.compare_hf:
        theirs = result["transformers"]
        print(
            f"  transformers   {theirs['median_ms']:9.1f} ms  {theirs['images_per_s']:8.2f} img/s"
            f"  (transformers {theirs['version']})"
        )
        print(f"  speed-up (transformers / segformer-lab): {result['speedup']:.2f}x")
        if args.train:
            print(f"  loss difference before training (eval mode): {result['loss_abs_diff']:.2e}")
        else:
            print(f"  max abs logit difference: {result['max_abs_diff']:.2e}")
    if args.onnx:
        ort = result["onnxruntime"]
        print(
            f"  onnxruntime    {ort['median_ms']:9.1f} ms  {ort['images_per_s']:8.2f} img/s"
            f"  (onnxruntime {ort['version']}, CPU, opset 18, static shape)"
        )
        print(f"  speed-up (PyTorch eager / onnxruntime): {result['onnx_speedup']:.2f}x")
        print(f"  max abs logit difference (onnxruntime): {result['onnx_max_abs_diff']:.2e}")
    return 0

