"""INT8 ONNX files from a float32 export, with onnxruntime's quantisation tools: static
(activation ranges calibrated on images) or dynamic (no data: weights quantised offline,
activations at run time). Which operators are quantised is a named recipe (``RECIPES``);
the defaults are the fastest sets for their accuracy measured on this project's models
(docs/deploy.md, "INT8"), the others stay for comparison.

What the measurements found (onnxruntime 1.32, x86 CPU): only the MatMuls with a weight
matrix (the 1x1 projections) gain from int8. Depthwise 3x3 convolutions run slower as
``QLinearConv`` than in float; the attention products and Softmax (both inputs are
activations) become ``QLinearMatMul``/``QLinearSoftmax``, several times slower than their
float kernels; LayerNorm, GELU, RoPE and the decoder's upsampling are never quantised.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .._io import atomic_write
from ..models import SegmentationModel
from .check import check_onnx, describe_checks
from .errors import ExportError, described
from .exporter import CHECK_SIZES, ExportResult, export_onnx
from .opset import DEFAULT_OPSET

STATIC, DYNAMIC = "static", "dynamic"
INPUT_NAME = "pixel_values"


@dataclass(frozen=True)
class Int8Recipe:
    """What one INT8 variant quantises and how."""

    mode: str  # STATIC (needs calibration images) or DYNAMIC
    description: str
    op_types: tuple[str, ...] = ("MatMul",)
    qdq: bool = True  # QuantizeLinear/DequantizeLinear pairs (else QOperator: QLinearConv, QLinearMatMul)
    weight_matmuls_only: bool = True  # leave MatMuls of two activations (attention) in float
    depthwise: bool = False  # quantise grouped (depthwise) convolutions
    float_outputs: bool = True  # quantised ops hand float to the next op (MatMulIntegerToFloat)
    activations_uint8: bool = True  # u8 activations with s8 weights (x86's VNNI path), else s8/s8
    preprocess: bool = True  # onnxruntime's quant_pre_process (shape inference, graph optimisation)

    @property
    def static(self) -> bool:
        return self.mode == STATIC


RECIPES: dict[str, Int8Recipe] = {
    "static": Int8Recipe(STATIC, "static: weight MatMuls in int8 (QDQ, per-channel), float outputs"),
    "static-qop": Int8Recipe(
        STATIC, "static QOperator: 1x1 convolutions and weight MatMuls (QLinearConv, QLinearMatMul)",
        op_types=("Conv", "MatMul", "Gemm"), qdq=False, float_outputs=False,
    ),
    "static-qdq-all": Int8Recipe(
        STATIC, "static QDQ: every Conv, MatMul and Gemm but the attention products",
        op_types=("Conv", "MatMul", "Gemm"), depthwise=True, float_outputs=False,
    ),
    "static-naive": Int8Recipe(
        STATIC, "static QDQ on every Conv/MatMul/Gemm, s8 activations, no pre-processing",
        op_types=("Conv", "MatMul", "Gemm"), weight_matmuls_only=False, depthwise=True, float_outputs=False,
        activations_uint8=False, preprocess=False,
    ),
    "dynamic": Int8Recipe(DYNAMIC, "dynamic (no calibration data): weight MatMuls int8 per-channel, "
                          "activations quantised at run time"),
}  # fmt: skip
DEFAULT_STATIC, DEFAULT_DYNAMIC = "static", "dynamic"


class CalibrationReader:
    """onnxruntime's ``CalibrationDataReader`` interface over float32 ``[1, 3, H, W]``
    arrays (any H, W: the export is dynamic), read one window at a time: the quantiser's
    strided mode (``set_range``) reduces each image's activations to their ranges before
    the next runs, so memory does not grow with the image count. (Its
    ``CalibMaxIntermediateOutputs`` drops collected batches instead: not used.)"""

    def __init__(self, images: Iterable[np.ndarray]) -> None:
        self.images = [np.ascontiguousarray(image, dtype=np.float32) for image in images]
        self.set_range(0, len(self.images))

    def __len__(self) -> int:
        return len(self.images)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._window: Iterator[np.ndarray] = iter(self.images[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        image = next(self._window, None)
        return None if image is None else {INPUT_NAME: image}


def kept_float_nodes(path: str | os.PathLike, recipe: Int8Recipe) -> list[str]:
    """Names of the nodes of the ONNX file that ``recipe`` leaves in float among its op
    types: grouped convolutions (depthwise) and MatMuls whose second input is not a weight."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Conv" and not recipe.depthwise:
            if next((a.i for a in node.attribute if a.name == "group"), 1) > 1:
                keep.append(node.name)
        if node.op_type == "MatMul" and recipe.weight_matmuls_only and node.input[1] not in weights:
            keep.append(node.name)
    return keep


def own_gemm_inputs(path: str | os.PathLike) -> int:
    """Give every Gemm whose second input is computed (not a weight) and read by another
    Gemm too its own copy (an ``Identity``), in the file at ``path``. onnxruntime's
    dynamic and QOperator quantisers rewrite each Gemm with ``transB`` as a MatMul after
    a Transpose named after that input, so two Gemms sharing it (BoostFormer's decoder,
    whose folded weights are computed in the graph) would define one name twice and
    the file would not load. Returns how many copies were made."""
    import onnx
    from onnx import helper

    proto = onnx.load(str(path))
    weights = {t.name for t in proto.graph.initializer}
    readers: dict[str, int] = {}
    nodes, copies = [], 0
    for node in proto.graph.node:
        if node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] not in weights:
            readers[node.input[1]] = readers.get(node.input[1], 0) + 1
            if readers[node.input[1]] > 1:
                copy = f"{node.input[1]}__for_{node.name}"
                nodes.append(helper.make_node("Identity", [node.input[1]], [copy], name=f"{copy}_identity"))
                node.input[1] = copy
                copies += 1
        nodes.append(node)
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    onnx.save_model(proto, str(path))
    return copies


def unquantised_readers_read_float(path: str | os.PathLike, op_types: tuple[str, ...]) -> int:
    """Rewire, in the QDQ file at ``path``, every node outside ``op_types`` that reads a
    ``DequantizeLinear(QuantizeLinear(x))`` pair to read ``x`` itself. The quantiser hands
    a quantised MatMul's input pair to the tensor's other readers too (the Transpose
    into the key/value reduction convolution reads the LayerNorm output that the query
    projection quantises), which would add rounding error to a float branch and save
    nothing. Returns how many inputs were rewired."""
    import onnx

    proto = onnx.load(str(path))
    producer = {output: node for node in proto.graph.node for output in node.output}
    rewired = 0
    for node in proto.graph.node:
        if node.op_type in op_types or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[index] = q.input[0]
                rewired += 1
    onnx.save_model(proto, str(path))
    return rewired


def quantize_onnx(
    float_path: str | os.PathLike,
    out_path: str | os.PathLike,
    recipe: str = DEFAULT_DYNAMIC,
    calibration: Iterable[np.ndarray] | None = None,
) -> dict:
    """Write the INT8 version of the float32 ONNX file ``float_path`` to ``out_path`` by
    ``RECIPES[recipe]``; ``calibration`` (static recipes only, required there) yields the
    float32 inputs whose activation ranges set the scales. Returns what was done: recipe,
    mode, description, calibration image count and the op types of the result."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_dynamic, quantize_static

    if recipe not in RECIPES:
        raise ValueError(f"unknown INT8 recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    chosen = RECIPES[recipe]
    if chosen.static and calibration is None:
        raise ValueError(f"INT8 recipe {recipe!r} is static: it needs calibration images (--calibrate FORMAT:ROOT)")
    if not chosen.static and calibration is not None:
        raise ValueError(f"INT8 recipe {recipe!r} is dynamic: it takes no calibration images")
    quiet = logging.getLogger()  # the quantiser warns through the root logger, once per weight
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as directory:
            source = Path(directory) / "preprocessed.onnx"
            if chosen.preprocess:
                quant_pre_process(str(float_path), str(source), auto_merge=True, guess_output_rank=True)
            else:
                onnx.save_model(onnx.load(str(float_path)), str(source))
            own_gemm_inputs(source)
            settings = dict(
                per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=list(chosen.op_types),
                nodes_to_exclude=kept_float_nodes(source, chosen),
            )  # fmt: skip
            options = {"MatMulConstBOnly": chosen.weight_matmuls_only}
            if not chosen.static:
                quantize_dynamic(str(source), str(out_path), extra_options=options, **settings)
                images = 0
            else:
                reader = CalibrationReader(calibration)
                if not len(reader):
                    raise ValueError("INT8 calibration got no images")
                options["CalibStridedMinMax"] = 1
                if chosen.float_outputs:
                    options["OpTypesToExcludeOutputQuantization"] = list(chosen.op_types)
                quantize_static(
                    str(source), str(out_path), reader,
                    quant_format=QuantFormat.QDQ if chosen.qdq else QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8 if chosen.activations_uint8 else QuantType.QInt8,
                    calibration_providers=["CPUExecutionProvider"], extra_options=options, **settings,
                )  # fmt: skip
                images = len(reader)
                if chosen.float_outputs:
                    unquantised_readers_read_float(out_path, chosen.op_types)
    except (ValueError, ExportError):
        raise
    except Exception as err:  # onnxruntime's tools raise bare Exceptions from many places
        raise ExportError(
            f"onnxruntime quantisation ({recipe}) failed: {described(err)}"
        ) from err
    finally:
        quiet.setLevel(level)
    proto = onnx.load(str(out_path))
    ops: dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"recipe": recipe, "mode": chosen.mode, "description": chosen.description,
            "calibration_images": images, "op_types": dict(sorted(ops.items(), key=lambda kv: -kv[1]))}  # fmt: skip


def export_int8(
    model: SegmentationModel,
    path: str | os.PathLike,
    recipe: str | None = None,
    calibration: Iterable[np.ndarray] | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    keep_float32: str | os.PathLike | None = None,
) -> tuple[ExportResult, dict]:
    """Export ``model`` to an INT8 ONNX file at ``path`` (dynamic batch, height, width):
    a float32 export (checked against PyTorch as usual) quantised by ``recipe`` (default:
    ``DEFAULT_STATIC`` with ``calibration`` images, else ``DEFAULT_DYNAMIC``), then, with
    ``check``, run in onnxruntime beside PyTorch at the export's check sizes, where the
    argmax over classes must agree on ``check.INT8_MIN_AGREEMENT`` of the positions. The
    file is written atomically and only if it passes; its ONNX metadata gets
    ``precision`` = ``int8-static`` or ``int8-dynamic`` and ``int8_recipe``. Returns the
    float export's result (path, checks and op types of the INT8 file) and the
    quantisation summary of ``quantize_onnx``. ``keep_float32``: where to keep the float32
    file it was quantised from (``export --int8`` times the two against each other)."""
    import onnx

    recipe = recipe or (DEFAULT_STATIC if calibration is not None else DEFAULT_DYNAMIC)
    if recipe not in RECIPES:
        raise ValueError(f"unknown INT8 recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    path = Path(path)
    with tempfile.TemporaryDirectory() as directory:
        float_path = Path(directory) / "float32.onnx"
        result = export_onnx(model, float_path, opset=opset, check=check)
        summary: dict = {}

        def write(tmp: Path) -> None:
            summary.update(quantize_onnx(float_path, tmp, recipe, calibration))
            proto = onnx.load(str(tmp))
            properties = {p.key: p.value for p in onnx.load(str(float_path), load_external_data=False).metadata_props}
            properties.update(precision=f"int8-{RECIPES[recipe].mode}", int8_recipe=recipe)
            onnx.helper.set_model_props(proto, properties)
            onnx.save_model(proto, str(tmp))
            result.size_bytes = tmp.stat().st_size
            result.checks = []
            if check:
                channels = model.config.in_channels
                shapes = [(b, channels, h, w) for b, h, w in CHECK_SIZES]
                result.checks = check_onnx(tmp, model, shapes, int8=True)
                if not result.passed:
                    raise ExportError(f"the INT8 file ({recipe}) does not match PyTorch: "
                                      + describe_checks(result.checks) + f"; {path} was not written")

        atomic_write(path, write)
        if keep_float32 is not None:
            shutil.move(float_path, keep_float32)
    result.path = str(path)
    result.op_types = summary["op_types"]
    return result, summary
