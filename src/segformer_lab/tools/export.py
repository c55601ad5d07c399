"""``segformer-lab export``: a checkpoint or registered model to ONNX, checked against
PyTorch with onnxruntime (with ``--report``, then the accuracy report on a dataset:
``analysis.onnx_report``), or (``--transformers``) to a directory transformers opens. The work is
``segformer_lab.export`` and ``models.save_transformers``; this module parses the command
line and prints the result."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from .._io import write_json
from ..engine import dataset_view, eval_preprocessing, run_recipe
from ..export import (
    DEFAULT_OPSET,
    EXPORT_EXTRA_HINT,
    FP16_RTOL,
    INT8_MIN_AGREEMENT,
    MAX_OPSET,
    MIN_DYNAMIC_SIDE,
    MIN_OPSET,
    TOLERANCE,
    ExportError,
    describe_checks,
    export_onnx,
    require_export_packages,
)
from ..export.calibration import DEFAULT_CALIBRATION_IMAGES, calibration_images
from ..export.quantize import DEFAULT_DYNAMIC, DEFAULT_STATIC, RECIPES, export_int8
from ..inference import OnnxModel
from ..models import CheckpointError, open_model, save_transformers
from .options import data_spec, positive_int
from ..analysis.onnx_report import format_report, onnx_report, report_data
from ..analysis.device import int8_support
from ..analysis.onnx_timing import compare_onnx_files
from ..analysis.timing import torch_threads

QUANTISED_OP_NAMES = {"MatMulIntegerToFloat", "DynamicQuantizeLinear", "MatMulInteger", "QuantizeLinear",
                      "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger"}


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
    p.add_argument("--int8", action="store_true",
                   help="INT8 with onnxruntime's quantisation: static (calibrated) with --calibrate, else dynamic "
                   f"(no data; weights int8, activations quantised at run time); checked by argmax agreement >= "
                   f"{100 * INT8_MIN_AGREEMENT:.0f}%% with PyTorch")  # fmt: skip
    p.add_argument("--calibrate", type=data_spec, metavar="FORMAT:ROOT",
                   help="--int8 calibration data, through the model's preprocessing (the run's, else the one stored "
                   "with the model, else the defaults)")
    p.add_argument("--calib-images", type=positive_int, default=DEFAULT_CALIBRATION_IMAGES, metavar="N",
                   help=f"calibration images, spread over the split (default {DEFAULT_CALIBRATION_IMAGES})")
    p.add_argument("--calib-split", metavar="SPLIT",
                   help="calibration split (default: the run's training split, else 'training')")
    p.add_argument("--int8-recipe", choices=list(RECIPES), metavar="NAME",
                   help=f"what --int8 quantises: {', '.join(RECIPES)} (default {DEFAULT_STATIC} with --calibrate, "
                   f"{DEFAULT_DYNAMIC} without; see docs/deploy.md)")  # fmt: skip
    p.add_argument("--num-classes", type=positive_int, metavar="K",
                   help="classes of a registered model (default: its own)")
    p.add_argument("--no-check", action="store_true", help="write the file without running it in onnxruntime")
    report = p.add_argument_group("accuracy report (PyTorch float32 against the ONNX files on a dataset)")
    report.add_argument("--report", type=data_spec, metavar="FORMAT:ROOT",
                        help="after the export, score PyTorch and the file on the validation split (the model's "
                        "preprocessing, as eval: the run's, else its own, else the defaults): mIoU, max abs score "
                        "difference, "
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


def check_int8_options(args: argparse.Namespace) -> None:
    """Refuse INT8 options that do not go together, before anything is loaded."""
    int8_only = [name for name, value in (("--calibrate", args.calibrate), ("--int8-recipe", args.int8_recipe),
                                          ("--calib-split", args.calib_split)) if value]  # fmt: skip
    if not args.int8:
        if int8_only:
            raise ValueError(f"{int8_only[0]} applies to --int8 exports only")
        return
    if args.fp16 or args.static:
        raise ValueError("--int8 does not combine with --fp16 or --static (INT8 files keep dynamic height and width)")
    if args.int8_recipe and RECIPES[args.int8_recipe].static != bool(args.calibrate):
        need = "needs --calibrate FORMAT:ROOT" if RECIPES[args.int8_recipe].static else "takes no --calibrate"
        raise ValueError(f"--int8-recipe {args.int8_recipe} is {RECIPES[args.int8_recipe].mode}: it {need}")


def calibration_data(args: argparse.Namespace, model, recipe):
    """The calibration images of ``--calibrate FORMAT:ROOT``: the split as the model sees it
    (``engine.dataset_view`` through ``engine.eval_preprocessing``: the run's, else the
    model's own, else the defaults); a class count other than the model's, or an empty
    split, is refused naming the option."""
    where = ":".join(args.calibrate)
    split = args.calib_split or (recipe.split("train") if recipe is not None else "training")
    preprocessing, _ = eval_preprocessing(model, recipe, str(args.source))
    try:
        dataset = dataset_view(args.calibrate, split, preprocessing, model.config.num_classes, recipe=recipe)
    except ValueError as err:
        raise ValueError(f"--calibrate {where} [{split}]: {err}") from err
    return calibration_images(dataset, args.calib_images), f"{where} [{split}]"


def int8_speed(float32: Path, int8: str, size: tuple[int, int] = (512, 512), repeats: int = 5) -> str:
    """One line: the INT8 file's speed against the float32 file it was quantised from, timed
    in turns in onnxruntime at torch's thread count (the user's), saying so when INT8 is
    slower; the float32 file is removed after."""
    try:
        timed = compare_onnx_files([str(float32), int8], size, batch=1, threads=None, warmup=1, repeats=repeats)
    finally:
        shutil.rmtree(float32.parent, ignore_errors=True)
    speedup = timed["models"][1]["speedup"]
    line = (f"speed at {timed['threads']} threads, {size[0]}x{size[1]}: INT8 {speedup:.2f}x the float32 export "
            f"(onnxruntime, median of {repeats} rounds in turns)")
    return line + (": INT8 is SLOWER than float32 on this CPU; keep the float32 file" if speedup < 1 else "")


def run(args: argparse.Namespace) -> int:
    if args.batch != 1 and args.static is None:
        raise ValueError("--batch sets the batch of a --static export (dynamic exports take any batch)")
    if args.transformers:
        onnx_only = [f"--{k.replace('_', '-')}" for k in ("static", "fp16", "int8", "calibrate", "no_check", "report")
                     if getattr(args, k)]  # fmt: skip
        onnx_only += ["--opset"] if args.opset != DEFAULT_OPSET else []
        if onnx_only:
            raise ValueError(f"{', '.join(onnx_only)}: options of --onnx, not of --transformers")
        model = open_model(args.source, num_classes=args.num_classes)
        print(f"wrote {model.config.name} for transformers to {save_transformers(model, args.transformers)}")
        return 0
    check_int8_options(args)
    quantised = None
    try:
        require_export_packages()
        model = open_model(args.source, num_classes=args.num_classes)
        recipe = run_recipe(args.source)
        if args.report:  # what the report needs is checked before the export
            preprocessing, line = eval_preprocessing(model, recipe, str(args.source))
            dataset, inference = report_data(args.report, recipe, preprocessing, model.config.num_classes)
            threads = args.report_threads or torch.get_num_threads()
            # files of this model: its classes and normalisation, should one carry no metadata
            known = {"num_classes": model.config.num_classes, "mean": preprocessing.mean, "std": preprocessing.std}
            others = [OnnxModel(path, threads=threads, **known) for path in args.compare]
        elif args.compare or args.report_json or args.report_threads:
            raise ValueError("--compare, --report-json and --report-threads go with --report FORMAT:ROOT")
        if args.int8:
            print(int8_support()[1])
            images, where = calibration_data(args, model, recipe) if args.calibrate else (None, None)
            float32 = Path(tempfile.mkdtemp()) / "float32.onnx"
            result, quantised = export_int8(model, args.onnx, recipe=args.int8_recipe, calibration=images,
                                            opset=args.opset, check=not args.no_check, keep_float32=float32)
        else:
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
    if quantised is not None and quantised["mode"] == "static":
        precision = (f"INT8 static (recipe {quantised['recipe']}, calibrated on {quantised['calibration_images']} "
                     f"images of {where})")
    elif quantised is not None:
        precision = f"INT8 DYNAMIC (recipe {quantised['recipe']}: no calibration data, activations quantised at run time)"
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
    if quantised is not None:
        print(f"  {quantised['description']}; ops: " + ", ".join(f"{k} {v}" for k, v in quantised["op_types"].items()
                                                               if k in QUANTISED_OP_NAMES))
        print("  " + int8_speed(float32, result.path))
    if args.report:
        print(line)
        files = [OnnxModel(result.path, threads=threads), *others]
        with torch_threads(threads):
            report = onnx_report(model, files, dataset, inference, size=args.report_size,
                                   repeats=args.report_repeats, progress=True)
        print(format_report(report))
        if args.report_json:
            write_json(args.report_json, report)
    return 0
