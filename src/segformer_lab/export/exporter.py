"""``export_onnx``: a model to an ONNX file with the dynamo exporter, dynamic batch,
height and width by default or a fixed shape, lowered to the opset asked for and checked
in onnxruntime before it is put in place.

Every export is checked before it is written: onnxruntime runs the file at two
resolutions other than the export example (dynamic) or at the fixed shape (static), and
the largest absolute logit difference from PyTorch eager must stay within the tolerance
(``check.TOLERANCE`` in float32, ``check.FP16_RTOL`` for ``fp16``). A file that fails its
check is not written (unless ``check=False``).
"""

from __future__ import annotations

import copy
import logging
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .._io import atomic_write
from ..models import SegmentationModel
from .check import CheckResult, check_onnx, describe_checks
from .errors import ExportError, described, require_export_packages
from .metadata import export_metadata, write_metadata
from .opset import (
    DEFAULT_OPSET,
    EXPORTER_OPSET,
    FIRST_OPSET_WITH_LAYER_NORM,
    MAX_OPSET,
    MIN_OPSET,
    all_nodes,
    lower_opset,
)
from .surgery import HalfPrecision, decompose_layer_norms, float32_islands

log = logging.getLogger("segformer_lab")

MIN_DYNAMIC_SIDE = 64  # dynamic exports assume H, W >= 64: below, reduced attention grids collapse to 1x1
EXAMPLE_SIZE = (2, 96, 128)  # batch, height, width of the dynamic export's example input
CHECK_SIZES = ((1, 97, 130), (2, 160, 75))  # batch, height, width checked in onnxruntime (dynamic exports)
QUIET_LOGGERS = ("torch.onnx", "torch.export", "torch._dynamo", "torch.fx", "onnxscript", "onnx_ir")


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


def _torch_export(model: nn.Module, example: torch.Tensor, opset: int, dynamic_shapes):
    """``torch.onnx.export`` with dynamo, quietly (its progress goes to the debug log)."""
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
            raise ExportError(f"torch.onnx.export failed: {described(err)}") from err
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)
    return program


def _plain_output_dim_names(proto) -> None:
    """The exporter names the logits' dynamic sides by their formula
    (``(((height - 1)//4)) + 1``); plain names read better in tools such as Netron or
    trtexec: ``logits_height``, ``logits_width``."""
    renames = {
        dim.dim_param: {2: "logits_height", 3: "logits_width"}.get(index, f"logits_dim{index}")
        for index, dim in enumerate(proto.graph.output[0].type.tensor_type.shape.dim)
        if dim.dim_param and not dim.dim_param.isidentifier()
    }
    for value in (*proto.graph.input, *proto.graph.output, *proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


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
    (see ``opset``). ``fp16`` stores weights and computes in float16 between
    float32 input and output. With ``check`` (default) onnxruntime runs the file before it
    is renamed into place; if any check fails, ``ExportError`` is raised and nothing is
    written. The file's metadata (``metadata.py``) carries the model's class names and
    palette (when its config has them), the ImageNet normalisation, opset and precision. ``model`` is put in eval mode; its weights and modules are not changed (the
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
    if fp16:
        float32_islands(proto)  # LayerNorm and Softmax in float32: no float16 overflow in any runtime
    got_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    op_types = dict(Counter(node.op_type for node in all_nodes(proto.graph)).most_common())
    if got_opset != opset:
        raise ExportError(f"the exporter produced opset {got_opset}, not {opset}")
    if opset < FIRST_OPSET_WITH_LAYER_NORM and "LayerNormalization" in op_types:
        raise ExportError(f"the opset {opset} graph still holds LayerNormalization")
    input_shape = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    _plain_output_dim_names(proto)
    precision = "float16" if fp16 else "float32"
    write_metadata(proto, export_metadata(model, opset, precision))

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
