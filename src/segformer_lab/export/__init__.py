"""ONNX export as a library: model surgery before export, ``export_onnx`` (dynamo
exporter, dynamic or static shapes, float32 or float16), our opset lowering for runtimes
without ``LayerNormalization`` and the onnxruntime check of every file written::

    from segformer_lab.export import export_onnx

    result = export_onnx(model, "b0.onnx", opset=16)   # ExportResult; ExportError if a check fails

onnx, onnxscript and onnxruntime are optional (``pip install 'segformer-lab[export]'``)
and imported by the functions that need them. The ``export`` command is
``segformer_lab.tools.export``.

Modules: ``exporter`` (export_onnx, ExportResult), ``opset`` (opset range, lower_opset),
``surgery`` (DecomposedLayerNorm, HalfPrecision), ``check`` (onnx_session, OnnxRunner,
logit_agreement, check_onnx, tolerances), ``errors`` (ExportError, require_export_packages), ``quantize`` (INT8 recipes,
quantize_onnx, export_int8), ``calibration`` (calibration images from a dataset),
``metadata`` (what a file carries for its users: OnnxMetadata, read_metadata).
"""

from .check import (
    FP16_RTOL, INT8_MIN_AGREEMENT, TOLERANCE, CheckResult, OnnxRunner, check_onnx, describe_checks, logit_agreement,
    onnx_session,
)  # fmt: skip
from .errors import EXPORT_EXTRA_HINT, ExportError, require_export_packages
from .exporter import MIN_DYNAMIC_SIDE, ExportResult, export_onnx
from .metadata import MetadataError, OnnxMetadata, read_metadata
from .opset import DEFAULT_OPSET, FIRST_OPSET_WITH_LAYER_NORM, MAX_OPSET, MIN_OPSET, lower_opset
from .quantize import RECIPES, Int8Recipe, export_int8, quantize_onnx
from .surgery import DecomposedLayerNorm, HalfPrecision, decompose_layer_norms

__all__ = [
    "DEFAULT_OPSET", "EXPORT_EXTRA_HINT", "FIRST_OPSET_WITH_LAYER_NORM", "FP16_RTOL", "INT8_MIN_AGREEMENT",
    "MAX_OPSET", "MIN_DYNAMIC_SIDE", "MIN_OPSET", "RECIPES", "TOLERANCE", "CheckResult", "DecomposedLayerNorm",
    "ExportError", "ExportResult", "HalfPrecision", "Int8Recipe", "MetadataError", "OnnxMetadata", "OnnxRunner", "check_onnx",
    "decompose_layer_norms", "describe_checks", "export_int8", "export_onnx", "logit_agreement", "lower_opset", "onnx_session",
    "quantize_onnx", "read_metadata", "require_export_packages",
]
