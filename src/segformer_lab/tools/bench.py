"""``segformer-lab bench``: latency, throughput and peak memory of models, in turns with
each other, with transformers or with onnxruntime; training steps; the data pipeline
(what is measured, and how: ``analysis.benchmark``, docs/benchmarks.md)."""

from __future__ import annotations

import argparse
import json
import sys

from ..analysis.benchmark import (
    DEFAULT_REPEATS, DEFAULT_WARMUP, ONNX_PRECISIONS, benchmark, compare_models, resolve_targets,
)  # fmt: skip
from ..analysis.data_throughput import print_data_result, run_data_bench
from ..analysis.device import PRECISIONS, int8_support
from ..analysis.onnx_timing import compare_onnx_files, print_onnx_files
from ..analysis.timing import mib, print_comparison, setting

DEFAULT_DATA_SAMPLES = 48


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Median latency, throughput and peak memory of a model on random input (eval mode, inference_mode), "
        "on the CPU or a GPU, in float32, bfloat16 or float16 (autocast), eager or compiled. With --compare-hf, "
        "transformers' SegFormer runs the same weights in turns with ours, in the same precision. With "
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
    p.add_argument("--device", default="cpu", metavar="DEVICE", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS),
                   help="fp32, or autocast to bf16/fp16 for every contender (default: fp32)")
    p.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile every contender (optional MODE: torch.compile's mode, e.g. "
                        "reduce-overhead); one that fails is left out with one line, unless it is the first")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch.set_num_threads (default: torch's)")
    p.add_argument(
        "--warmup", type=int, default=DEFAULT_WARMUP, metavar="N", help=f"untimed rounds (default: {DEFAULT_WARMUP})"
    )
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help=f"timed rounds (default: {DEFAULT_REPEATS}); with --data timed samples (default: "
                        f"{DEFAULT_DATA_SAMPLES})")  # fmt: skip
    p.add_argument("--compare-hf", action="store_true", help="also time transformers' SegFormer with the same weights")
    p.add_argument("--onnx", nargs="*", default=None, metavar="FILE",
                   help="also time the model exported to ONNX in onnxruntime (CPU), in turns with PyTorch eager; "
                   "with FILEs and no MODEL, time those ONNX files (any precision) in turns, each against the first")
    p.add_argument("--onnx-precision", nargs="+", choices=ONNX_PRECISIONS, default=(), metavar="P",
                   help="with --onnx and a MODEL, also export in these precisions (fp16; int8: dynamic "
                   "quantisation) and time them in turns against the float32 file")
    p.add_argument("--num-classes", type=int, default=None, metavar="N",
                   help="build the registered models with N classes, as your data set has them (default: theirs, "
                        "150 for ADE20K); the head and the loss grow with it")
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
    if args.onnx and args.models:
        raise ValueError("bench --onnx FILE ... times ONNX files; give no MODEL with them")
    if args.onnx:
        return print_onnx_files(compare_onnx_files(args.onnx, tuple(args.size), args.batch, args.threads,
                                                   args.warmup, args.repeats or DEFAULT_REPEATS), args.json)
    if args.onnx_precision and args.onnx is None:
        raise ValueError("--onnx-precision goes with --onnx")
    args.onnx = args.onnx is not None
    if not args.models:
        raise ValueError("give at least one MODEL (or --data)")
    args.repeats = args.repeats or DEFAULT_REPEATS
    names = resolve_targets(args.models)
    compile_settings = None if args.compile is None else {} if args.compile == "default" else {"mode": args.compile}
    device_options = {"device": args.device, "precision": args.precision, "compile": compile_settings,
                      "num_classes": args.num_classes}
    if len(names) > 1:
        if args.compare_hf or args.onnx:
            raise ValueError("--compare-hf and --onnx take one model")
        return print_comparison(compare_models(names, tuple(args.size), args.batch, args.threads, args.warmup,
                                               args.repeats, args.train, **device_options), args.json)  # fmt: skip
    try:
        result = benchmark(
            names[0], tuple(args.size), args.batch, args.threads, args.warmup, args.repeats, args.compare_hf,
            args.onnx, args.train, **device_options, onnx_precisions=tuple(args.onnx_precision),
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
        f"{result['model']}, input {shape}, {setting(result)}: "
        f"median of {result['repeats']} {what} after {result['warmup']} warm-up"
    )
    ours = result["ours"]
    print(f"  segformer-lab  {ours['median_ms']:9.1f} ms  {ours['images_per_s']:8.2f} img/s  {mib(ours)}")
    if "transformers" in result:
        theirs = result["transformers"]
        print(
            f"  transformers   {theirs['median_ms']:9.1f} ms  {theirs['images_per_s']:8.2f} img/s  {mib(theirs)}"
            f"  (transformers {theirs['version']})"
        )
        print(f"  speed-up (transformers / segformer-lab): {result['speedup']:.2f}x")
        if result["memory_ratio"] is not None:
            print(f"  peak memory (segformer-lab / transformers): {result['memory_ratio']:.2f}x")
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
        for precision, row in result.get("onnx_variants", {}).items():
            print(f"  onnxruntime {precision:<5} {row['median_ms']:6.1f} ms  speed-up over float32 onnxruntime "
                  f"{row['speedup']:.2f}x, argmax agreement {100 * row['argmax_agreement']:.2f}%, "
                  f"max abs diff {row['max_abs_diff']:.2e}")
            if row["speedup"] < 1:
                print(f"  {precision} is SLOWER than float32 on this CPU; {int8_support()[1]}")
    if "machine" in result:
        m = result["machine"]
        print(f"  executed {m['executed_gmacs']:.2f} GMACs: {m['gmac_per_s']:.1f} GMAC/s, "
              f"{100 * m['sgemm_fraction']:.0f}% of this CPU's sgemm rate ({m['sgemm_gmac_per_s']:.1f} GMAC/s: a "
              "1024x1024 float32 matrix product timed in the same turns)")
    print(f"  ({result['memory']})")
    return 0

