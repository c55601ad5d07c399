"""``segformer-lab export``: ONNX export, checked against PyTorch with onnxruntime.

The graph comes from the dynamo-based exporter (``torch.onnx.export(..., dynamo=True)``)
with dynamic batch, height and width by default, or a fixed shape (``--static H W``).
Every export is checked before it is put in place: onnxruntime runs the file at two
resolutions other than the export example (dynamic) or at the fixed shape (static), and
the largest absolute logit difference from PyTorch eager must stay within the tolerance
(1e-4 in float32; see ``FP16_RTOL`` for ``--fp16``). A file that fails its check is not
written (unless ``check=False`` / ``--no-check``).

Opsets below 17 have no ``LayerNormalization`` op (older TensorRT, e.g. on a Jetson
Nano, cannot parse it). The exporter does not decompose it by itself: it builds every
graph at opset 18 and asks onnx's version converter to go down, which fails on
``LayerNormalization`` (the exporter then only warns and leaves the file at opset 18,
LayerNormalization included). So for opsets below 17 every ``nn.LayerNorm`` is swapped,
in a copy of the model, for ``DecomposedLayerNorm``: the same function written as mean,
variance and square root, which exports as ``ReduceMean``/``Sub``/``Mul``/``Add``/
``Sqrt``/``Div``. onnx's converter fails on that graph too (``ReduceMean``, ``Shape``), so
the opset 18 graph is brought down by ``lower_opset``, our own pass, and the result is
checked for the opset and for the absence of ``LayerNormalization``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .._io import atomic_write
from ..models import CheckpointError, SegmentationModel

log = logging.getLogger("segformer_lab")

DEFAULT_OPSET = 18
EXPORTER_OPSET = 18  # the lowest opset torch.onnx's dynamo exporter builds; lower ones go through lower_opset
MIN_OPSET = 13  # below, ops such as Softmax change meaning without changing signature
MAX_OPSET = 23
FIRST_OPSET_WITH_LAYER_NORM = 17
MIN_DYNAMIC_SIDE = 64  # dynamic exports assume H, W >= 64: below, reduced attention grids collapse to 1x1
EXAMPLE_SIZE = (2, 96, 128)  # batch, height, width of the dynamic export's example input
CHECK_SIZES = ((1, 97, 130), (2, 160, 75))  # batch, height, width checked in onnxruntime (dynamic exports)
TOLERANCE = 1e-4  # max abs logit difference, float32
FP16_RTOL = 1e-2  # --fp16: max abs difference <= FP16_RTOL * max(1, max |logits|)
QUIET_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir")
EXPORT_EXTRA_HINT = "pip install 'segformer-lab[export]'"


class ExportError(RuntimeError):
    """An export that failed or that did not pass its check."""


@dataclass
class CheckResult:
    """onnxruntime against PyTorch eager on one random input."""

    shape: tuple[int, ...]
    max_abs_diff: float
    max_abs_logit: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance


@dataclass
class ExportResult:
    path: str
    model: str
    opset: int
    dynamic: bool
    fp16: bool
    input_shape: list  # ints, or names of dynamic axes
    op_types: dict[str, int]
    size_bytes: int
    seconds: float
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        return {
            "path": self.path, "model": self.model, "opset": self.opset, "dynamic": self.dynamic,
            "fp16": self.fp16, "input_shape": self.input_shape, "size_bytes": self.size_bytes,
            "seconds": self.seconds, "nodes": sum(self.op_types.values()), "op_types": self.op_types,
            "checks": [{"shape": list(c.shape), "max_abs_diff": c.max_abs_diff, "tolerance": c.tolerance,
                        "passed": c.passed} for c in self.checks],
            "passed": self.passed,
        }  # fmt: skip


def require_export_packages() -> None:
    """Import onnx, onnxscript and onnxruntime, or say how to install them."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ModuleNotFoundError(f"ONNX export needs {', '.join(missing)}: {EXPORT_EXTRA_HINT}")


# --- graph surgery before export ------------------------------------------------------
class DecomposedLayerNorm(nn.Module):
    """``nn.LayerNorm`` as mean, variance and rsqrt, for ONNX opsets without
    ``LayerNormalization``. Shares the original's parameters (same state dict keys);
    statistics are computed in at least float32 (so an fp16 export stays stable)."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.normalized_shape = tuple(norm.normalized_shape)
        self.eps = norm.eps
        self.weight = norm.weight
        self.bias = norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-len(self.normalized_shape), 0))
        compute = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(compute)
        centred = xf - xf.mean(dims, keepdim=True)
        variance = (centred * centred).mean(dims, keepdim=True)
        y = (centred / torch.sqrt(variance + self.eps)).to(x.dtype)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"


def decompose_layer_norms(model: nn.Module) -> int:
    """Replace every ``nn.LayerNorm`` in ``model`` (in place) by ``DecomposedLayerNorm``;
    returns how many were replaced."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.LayerNorm):
                setattr(parent, name, DecomposedLayerNorm(child))
                replaced += 1
    return replaced


class HalfPrecision(nn.Module):
    """The model in float16 behind float32 inputs and outputs (casts at both ends), so
    callers of the exported graph feed and read float32 as with a float32 export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values.half()).float()


# --- export ---------------------------------------------------------------------------
def export_onnx(
    model: SegmentationModel,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    static_size: tuple[int, int] | None = None,
    batch: int = 1,
    fp16: bool = False,
    check: bool = True,
) -> ExportResult:
    """Export ``model`` to ONNX at ``path`` (written atomically) and check it.

    Dynamic batch, height and width (H, W >= ``MIN_DYNAMIC_SIDE``) unless ``static_size``
    (then the input is ``[batch, C, H, W]``). Opsets below 17 get LayerNorm decomposed
    (see the module notes). ``fp16`` stores weights and computes in float16 between
    float32 input and output. With ``check`` (default) onnxruntime runs the file before it
    is renamed into place; if any check fails, ``ExportError`` is raised and nothing is
    written. ``model`` is put in eval mode; its weights and modules are not changed (the
    export works on a float32 CPU copy).
    """
    require_export_packages()
    import onnx

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset {opset} is not supported: choose {MIN_OPSET}..{MAX_OPSET}")
    if static_size is not None:
        static_size = (int(static_size[0]), int(static_size[1]))
        if min(static_size) < SegmentationModel.min_size:
            raise ValueError(f"--static {static_size}: height and width must be >= {SegmentationModel.min_size}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"{path}: the output file should end in .onnx")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent} is not a directory")
    start = time.perf_counter()
    reference = model.eval()
    graph_model = copy.deepcopy(reference).float().cpu()
    if opset < FIRST_OPSET_WITH_LAYER_NORM:
        count = decompose_layer_norms(graph_model)
        log.debug("opset %d: %d LayerNorm modules decomposed", opset, count)
    if fp16:
        graph_model = HalfPrecision(graph_model)
    graph_model.eval()
    channels = model.config.in_channels
    if static_size is None:
        example = torch.randn(EXAMPLE_SIZE[0], channels, *EXAMPLE_SIZE[1:])
        axes = {
            0: torch.export.Dim("batch", min=1, max=1024),
            2: torch.export.Dim("height", min=MIN_DYNAMIC_SIDE),
            3: torch.export.Dim("width", min=MIN_DYNAMIC_SIDE),
        }
        dynamic_shapes = (axes,)
    else:
        example = torch.randn(batch, channels, *static_size)
        dynamic_shapes = None
    program = _torch_export(graph_model, example, max(opset, EXPORTER_OPSET), dynamic_shapes)
    proto = lower_opset(program.model_proto, opset)
    got_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    op_types = dict(Counter(node.op_type for node in _all_nodes(proto.graph)).most_common())
    if got_opset != opset:
        raise ExportError(f"the exporter produced opset {got_opset}, not {opset}")
    if opset < FIRST_OPSET_WITH_LAYER_NORM and "LayerNormalization" in op_types:
        raise ExportError(f"the opset {opset} graph still holds LayerNormalization")
    input_shape = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    # The exporter names the logits' dynamic sides by their formula ("(((height - 1)//4)) + 1");
    # plain names read better in tools such as Netron or trtexec.
    renames = {
        dim.dim_param: {2: "logits_height", 3: "logits_width"}.get(index, f"logits_dim{index}")
        for index, dim in enumerate(proto.graph.output[0].type.tensor_type.shape.dim)
        if dim.dim_param and not dim.dim_param.isidentifier()
    }
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]

    result = ExportResult(
        path=str(path), model=model.config.name, opset=opset, dynamic=static_size is None, fp16=fp16,
        input_shape=input_shape, op_types=op_types, size_bytes=0, seconds=0.0,
    )  # fmt: skip

    def write(tmp: Path) -> None:
        onnx.save_model(proto, str(tmp))
        result.size_bytes = tmp.stat().st_size
        if check:
            sizes = CHECK_SIZES if static_size is None else ((batch, *static_size),)
            result.checks = check_onnx(tmp, reference, [(b, channels, h, w) for b, h, w in sizes], fp16=fp16)
            if not result.passed:
                raise ExportError("onnxruntime does not match PyTorch: " + describe_checks(result.checks)
                                  + f"; {path} was not written (--no-check writes it anyway)")  # fmt: skip

    atomic_write(path, write)
    result.seconds = time.perf_counter() - start
    return result


def lower_opset(proto, target: int):
    """The ONNX model ``proto`` (default domain at a higher opset, e.g. the exporter's 18)
    rewritten for opset ``target`` (>= ``MIN_OPSET``). onnx's own version converter fails on
    the exporter's graphs (it keeps opset 18's ``noop_with_empty_axes`` on ``ReduceMean``
    and has no adapter down from ``Shape``-15), so this pass goes node by node, comparing
    the op's schema at both opsets:

    - same schema version: nothing to do (most ops; many later versions only add types);
    - an input that is an attribute at ``target`` (``ReduceMean``'s ``axes`` before 18):
      its constant value becomes the attribute;
    - attributes the older schema lacks are dropped when they hold the newer schema's
      default (``noop_with_empty_axes=0``, ``Resize``'s ``antialias=0`` ...);
    - anything else (an op that does not exist yet, such as ``GridSample`` below 16, or a
      non-default new attribute) raises ``ExportError`` naming the op.

    The result is checked with ``onnx.checker`` (full shape inference) and gets the IR
    version of the onnx release that introduced ``target``; numerics are checked by the
    caller in onnxruntime.
    """
    import numpy as np
    import onnx
    from onnx import defs, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    source = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if target >= source:
        return model
    initializers = {t.name: t for t in model.graph.initializer}

    def constant(name: str):
        if name in initializers:
            return numpy_helper.to_array(initializers[name])
        for node in model.graph.node:
            if node.op_type == "Constant" and node.output[0] == name:
                return numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "value"))
        return None

    def lower(node) -> None:
        if node.domain not in ("", "ai.onnx"):
            return
        try:
            new = defs.get_schema(node.op_type, source, node.domain)
        except defs.SchemaError:
            return  # not a standard op at this opset (a local function): left as it is
        try:
            old = defs.get_schema(node.op_type, target, node.domain)
        except defs.SchemaError:
            raise ExportError(
                f"{node.op_type} (node {node.name!r}) does not exist before opset {new.since_version}: "
                f"export with --opset {new.since_version} or higher"
            ) from None
        if old.since_version == new.since_version:
            return
        where = f"{node.op_type} (node {node.name!r})"
        old_inputs = [i.name for i in old.inputs]
        for index in reversed(range(len(node.input))):
            if index >= len(new.inputs):
                continue
            name = new.inputs[index].name
            if name in old_inputs or not node.input[index]:
                continue
            if name not in old.attributes:
                raise ExportError(f"{where}: input {name!r} has no counterpart at opset {target}")
            value = constant(node.input[index])
            if value is None:
                raise ExportError(f"{where}: input {name!r} is not a constant, so it cannot become an attribute")
            if index != len(node.input) - 1:
                raise ExportError(f"{where}: input {name!r} is not the last input")
            node.attribute.append(helper.make_attribute(name, [int(v) for v in value.reshape(-1)]))
            del node.input[index]
        while node.input and not node.input[-1]:
            del node.input[-1]
        for attribute in list(node.attribute):
            if attribute.name in old.attributes:
                continue
            declared = new.attributes.get(attribute.name)
            default = declared.default_value if declared is not None else None
            if default is not None and default.type != 0 and helper.get_attribute_value(attribute) == (
                helper.get_attribute_value(default)
            ):
                node.attribute.remove(attribute)
                continue
            if node.op_type == "Reshape" and attribute.name == "allowzero":
                # allowzero=1 keeps a 0 in the target shape literal, allowzero=0 copies the input's
                # dimension: they differ only for a 0 in the shape, i.e. for empty tensors, which
                # these models never see (every side is >= 1). A constant shape is checked.
                shape = constant(node.input[1])
                if shape is None or not (shape == 0).any():
                    node.attribute.remove(attribute)
                    continue
            raise ExportError(
                f"{where}: attribute {attribute.name}={helper.get_attribute_value(attribute)!r} "
                f"does not exist at opset {target}"
            )

    def split_shape_slices(graph) -> None:
        """``Shape(x, start, end)`` (opset 15) -> ``Slice(Shape(x), start, end)``."""
        nodes = [type(n)() for n in graph.node]
        for copy_, node in zip(nodes, graph.node):
            copy_.CopyFrom(node)
        del graph.node[:]
        for original in nodes:
            node = graph.node.add()
            node.CopyFrom(original)  # repeated fields hold copies: edit the one in the graph
            bounds = {a.name: a.i for a in node.attribute if a.name in ("start", "end")}
            if node.op_type != "Shape" or node.domain not in ("", "ai.onnx") or not bounds:
                continue
            del node.attribute[:]
            output = node.output[0]
            node.output[0] = f"{output}__full_shape"
            names = [f"{output}__{part}" for part in ("starts", "ends", "axes")]
            values = [bounds.get("start", 0), bounds.get("end", 2**62), 0]
            for name, value in zip(names, values):
                graph.initializer.append(numpy_helper.from_array(np.array([value], dtype=np.int64), name))
            graph.node.append(helper.make_node("Slice", [node.output[0], *names], [output], name=f"{node.name}__slice"))

    def visit(nodes) -> None:
        for node in nodes:
            lower(node)
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    visit(attribute.g.node)
                for sub in attribute.graphs:
                    visit(sub.node)

    if target < 15:
        split_shape_slices(model.graph)
    visit(model.graph.node)
    for function in model.functions:
        visit(function.node)
        for o in function.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = target
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = target
    _drop_unused_initializers(model.graph)
    model.ir_version = min(model.ir_version, _ir_version_for(target))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:
        raise ExportError(f"the opset {target} graph does not pass onnx.checker: {_first_line(err)}") from err
    return model


def _ir_version_for(opset: int) -> int:
    """The IR version of the first onnx release with ``opset`` (older runtimes reject newer IR)."""
    from onnx import helper

    releases = [(ir, ops) for _, ir, ops, *_ in helper.VERSION_TABLE if ops >= opset]
    return min(ir for ir, ops in releases if ops == min(o for _, o in releases))


def _drop_unused_initializers(graph) -> None:
    used = {name for node in _all_nodes(graph) for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _torch_export(model: nn.Module, example: torch.Tensor, opset: int, dynamic_shapes):
    """``torch.onnx.export`` with dynamo, quietly (its progress goes to the debug log)."""
    import warnings

    import onnxscript  # noqa: F401  (the exporter needs it; fail early with our hint)

    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.no_grad():
                program = torch.onnx.export(
                    model,
                    (example,),
                    dynamo=True,
                    opset_version=opset,
                    dynamic_shapes=dynamic_shapes,
                    input_names=["pixel_values"],
                    output_names=["logits"],
                    verbose=False,
                    report=False,
                )
        except Exception as err:  # the exporter raises its own error types from many places
            raise ExportError(f"torch.onnx.export failed: {type(err).__name__}: {_first_line(err)}") from err
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
    return program


def _first_line(err: Exception) -> str:
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    return lines[0][:500] if lines else ""


def _all_nodes(graph):
    """Nodes of a graph and of the subgraphs inside its nodes (If, Loop, Scan)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.g is not None and attribute.g.node:
                yield from _all_nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _all_nodes(sub)


def check_onnx(
    path: str | os.PathLike, model: nn.Module, shapes: list[tuple[int, ...]], fp16: bool = False, seed: int = 0
) -> list[CheckResult]:
    """Run the ONNX file in onnxruntime (CPU) and ``model`` in PyTorch on the same random
    inputs of each shape; the max abs logit difference and the tolerance it is held to."""
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        x = torch.randn(shape, generator=generator)
        (out,) = session.run(None, {name: x.numpy()})
        with torch.no_grad():
            expected = model(x.to(device)).float().cpu()
        got = torch.from_numpy(out).float()
        diff = (got - expected).abs().max().item() if got.shape == expected.shape else float("inf")
        scale = expected.abs().max().item()
        tolerance = FP16_RTOL * max(1.0, scale) if fp16 else TOLERANCE
        results.append(CheckResult(shape=tuple(shape), max_abs_diff=diff, max_abs_logit=scale, tolerance=tolerance))
    return results


def onnx_session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session with full graph optimisation and quiet logging. Its
    worker threads do not spin-wait between runs: spinning threads would take the cores
    from PyTorch when the two are timed in turns (``bench --onnx``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: fp16 graphs warn about every CPU fallback
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def describe_checks(checks: list[CheckResult]) -> str:
    parts = [f"{'x'.join(map(str, c.shape))}: max abs diff {c.max_abs_diff:.2e}" for c in checks]
    tolerance = ", ".join(sorted({f"{c.tolerance:.1e}" for c in checks}))
    scale = max(c.max_abs_logit for c in checks)
    return "; ".join(parts) + f" (tolerance {tolerance}; max |logit| {scale:.3g})"


# --- command line ---------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction, command: str) -> None:
    p = sub.add_parser(
        command,
        help="export a model to ONNX (checked with onnxruntime)",
        description="Export a checkpoint (anything load_model reads) or a registered model (random weights) to "
        "ONNX with the dynamo exporter: dynamic batch, height and width by default (H, W >= "
        f"{MIN_DYNAMIC_SIDE}), or a static shape. onnxruntime then runs the file at two other resolutions and "
        f"must match PyTorch within {TOLERANCE:.0e} (max abs logit difference); a file that does not match is not "
        f"written. Needs onnx, onnxscript and onnxruntime: {EXPORT_EXTRA_HINT}.",
    )
    p.add_argument("source", metavar="CHECKPOINT_OR_MODEL", help="checkpoint path or registered model name")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="output file")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET}); below 17 LayerNorm "
                   "is decomposed (no LayerNormalization op, for older TensorRT)")  # fmt: skip
    p.add_argument("--static", nargs=2, type=int, metavar=("H", "W"), help="fixed input size instead of dynamic axes")
    p.add_argument("--batch", type=int, default=1, metavar="N", help="batch size of a --static export (default 1)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and compute, float32 input/output "
                   f"(checked to {FP16_RTOL:.0e} x max(1, max |logit|))")
    p.add_argument("--num-classes", type=int, metavar="K", help="classes of a registered model (default: its own)")
    p.add_argument("--no-check", action="store_true", help="write the file without running it in onnxruntime")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..inference_api import resolve_model

    if args.batch != 1 and args.static is None:
        raise ValueError("--batch sets the batch of a --static export (dynamic exports take any batch)")
    try:
        require_export_packages()
        model = resolve_model(args.source, num_classes=args.num_classes)
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
    return 0
