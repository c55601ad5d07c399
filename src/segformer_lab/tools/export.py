"""``segformer-lab export``: a checkpoint or registered model to ONNX, checked against
PyTorch with onnxruntime (with ``--report``, then the parity report on a dataset:
``parity``), or (``--transformers``) to a directory transformers opens. The work is
``segformer_lab.export`` and ``models.save_transformers``; this module parses the command
line and prints the result."""

from __future__ import annotations

import argparse
import sys

import torch

from .._io import write_json
from ..data import IMAGENET_MEAN, IMAGENET_STD

from ..export import (
    DEFAULT_OPSET,
    EXPORT_EXTRA_HINT,
    FP16_RTOL,
    MAX_OPSET,
    MIN_DYNAMIC_SIDE,
    MIN_OPSET,
    TOLERANCE,
    ExportError,
    describe_checks,
    export_onnx,
    require_export_packages,
)
from ..engine.evaluation import run_config
from ..inference import OnnxModel
from ..models import CheckpointError, open_model, save_transformers
from .options import data_spec, positive_int
from .parity import format_report, parity_report, report_data
from .timing import torch_threads


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Export a checkpoint (anything load_model reads) or a registered model (random weights) to "
        "ONNX with the dynamo exporter: dynamic batch, height and width by default (H, W >= "
        f"{MIN_DYNAMIC_SIDE}), or a static shape. onnxruntime then runs the file at two other resolutions and "
        f"must match PyTorch within {TOLERANCE:.0e} (max abs logit difference); a file that does not match is not "
        f"written. Needs onnx, onnxscript and onnxruntime: {EXPORT_EXTRA_HINT}. With --transformers instead, "
        "a plain SegFormer is written in transformers' own format (SegformerForSemanticSegmentation.from_pretrained)."
    )
    p.add_argument("source", metavar="CHECKPOINT_OR_MODEL",
                   help="checkpoint path, Hugging Face Hub id (owner/name[@revision]) or registered model name")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--onnx", metavar="OUT.onnx", help="output file")
    out.add_argument("--transformers", metavar="DIR", help="write config.json and model.safetensors for transformers "
                     "into DIR instead (plain SegFormer only; RoPE and BoostFormer are refused)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET}); below 17 LayerNorm "
                   "is decomposed (no LayerNormalization op, for older TensorRT)")  # fmt: skip
    p.add_argument("--static", nargs=2, type=positive_int, metavar=("H", "W"),
                   help="fixed input size instead of dynamic axes")
    p.add_argument("--batch", type=positive_int, default=1, metavar="N",
                   help="batch size of a --static export (default 1)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and compute, float32 input/output "
                   f"(checked to {FP16_RTOL:.0e} x max(1, max |logit|))")
    p.add_argument("--num-classes", type=positive_int, metavar="K",
                   help="classes of a registered model (default: its own)")
    p.add_argument("--no-check", action="store_true", help="write the file without running it in onnxruntime")
    report = p.add_argument_group("parity report (PyTorch float32 against the ONNX files on a dataset)")
    report.add_argument("--report", type=data_spec, metavar="FORMAT:ROOT",
                        help="after the export, score PyTorch and the file on the validation split (the run's "
                        "transforms and inference settings, else the defaults): mIoU, max abs score difference, "
                        "argmax agreement, onnxruntime latency in turns")
    report.add_argument("--compare", nargs="+", default=[], metavar="FILE.onnx",
                        help="more exported files of the same model in the report (e.g. the float16 and int8 ones)")
    report.add_argument("--report-json", metavar="OUT.json", help="also write the report as JSON")
    report.add_argument("--report-size", nargs=2, type=positive_int, default=(512, 512), metavar=("H", "W"),
                        help="latency input size (default 512 512)")
    report.add_argument("--report-repeats", type=positive_int, default=20, metavar="N",
                        help="latency rounds after 2 warm-up rounds (default 20)")
    report.add_argument("--report-threads", type=positive_int, metavar="N",
                        help="threads of PyTorch and onnxruntime in the report (default: torch's)")


def run(args: argparse.Namespace) -> int:
    if args.batch != 1 and args.static is None:
        raise ValueError("--batch sets the batch of a --static export (dynamic exports take any batch)")
    if args.transformers:
        onnx_only = [f"--{k.replace('_', '-')}" for k in ("static", "fp16", "no_check", "report") if getattr(args, k)]
        onnx_only += ["--opset"] if args.opset != DEFAULT_OPSET else []
        if onnx_only:
            raise ValueError(f"{', '.join(onnx_only)}: options of --onnx, not of --transformers")
        model = open_model(args.source, num_classes=args.num_classes)
        print(f"wrote {model.config.name} for transformers to {save_transformers(model, args.transformers)}")
        return 0
    try:
        require_export_packages()
        model = open_model(args.source, num_classes=args.num_classes)
        if args.report:  # what the report needs is checked before the export
            dataset, inference = report_data(args.report, run_config(args.source), model.config.num_classes)
            threads = args.report_threads or torch.get_num_threads()
            # files of this model: its classes and normalisation, should one carry no metadata
            known = {"num_classes": model.config.num_classes, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
            others = [OnnxModel(path, threads=threads, **known) for path in args.compare]
        elif args.compare or args.report_json or args.report_threads:
            raise ValueError("--compare, --report-json and --report-threads go with --report FORMAT:ROOT")
        result = export_onnx(
            model, args.onnx, opset=args.opset, static_size=args.static, batch=args.batch, fp16=args.fp16,
            check=not args.no_check,
        )  # fmt: skip
    except (ModuleNotFoundError, CheckpointError) as err:
        print(f"segformer-lab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except ExportError as err:
        print(f"segformer-lab {args.command}: export failed: {err}", file=sys.stderr)
        return 1
    shape = "[" + ", ".join(map(str, result.input_shape)) + "]"
    precision = "float16 (float32 input/output)" if result.fp16 else "float32"
    print(
        f"exported {result.model} to {result.path}: opset {result.opset}, input {shape} "
        f"({'dynamic batch/height/width, H and W >= ' + str(MIN_DYNAMIC_SIDE) if result.dynamic else 'static'}), "
        f"{precision}, {sum(result.op_types.values())} nodes, {result.size_bytes / 2**20:.1f} MiB, "
        f"{result.seconds:.1f} s"
    )
    print(f"  LayerNormalization ops: {result.op_types.get('LayerNormalization', 0)}")
    if result.checks:
        print(f"  check (onnxruntime vs PyTorch): {describe_checks(result.checks)}: OK")
    else:
        print("  not checked (--no-check)")
    if args.report:
        files = [OnnxModel(result.path, threads=threads), *others]
        with torch_threads(threads):
            report = parity_report(model, files, dataset, inference, size=args.report_size,
                                   repeats=args.report_repeats, progress=True)
        print(format_report(report))
        if args.report_json:
            write_json(args.report_json, report)
    return 0
