"""Inference: class scores for images (whole image, sliding window, test-time
augmentation), image loading, colours and overlays, and the ``Segmenter`` API.

Sits above ``models`` and ``data`` and below ``engine`` and ``tools``: the engine's
validation and ``evaluate`` score with ``predict_labels``, the ``predict`` command is a
loop around ``Segmenter``::

    from segformer_lab.inference import Segmenter, predict_labels, predict_logits

Modules: ``logits`` (predict_labels, predict_logits, slide_logits, MODES), ``bands``
(scores a band of rows at a time: bounded memory), ``images`` (load_rgb; the
resize and normalisation are the model's ``data.Preprocessing``), ``colours`` (palettes, palette PNGs,
overlays, confidence maps), ``optimize`` (optimize_for_inference: BatchNorms and layer scales folded,
fused kernels), ``segmenter`` (Segmenter, class names), ``onnx_segmenter`` (an exported file in
onnxruntime: OnnxModel, OnnxSegmenter, open_segmenter).
"""

from .bands import upsample, window_starts
from .colours import (
    MAX_PALETTE_CLASSES,
    confidence_image,
    confidence_overlay,
    distinct_palette,
    label_image,
    overlay_image,
    palette_for,
)
from .images import load_rgb
from .logits import MODES, logit_bands, predict_labels, predict_logits, slide_logits
from .onnx_segmenter import NORMALIZATIONS, OnnxModel, OnnxSegmenter, is_onnx_file, open_segmenter, preprocessing_of
from .optimize import optimize_for_inference
from .segmenter import Segmenter

__all__ = [
    "MAX_PALETTE_CLASSES", "MODES", "NORMALIZATIONS", "OnnxModel", "OnnxSegmenter", "Segmenter",
    "confidence_image", "confidence_overlay", "distinct_palette", "is_onnx_file", "label_image",
    "load_rgb", "optimize_for_inference", "overlay_image", "palette_for", "logit_bands", "open_segmenter",
    "predict_labels", "predict_logits", "preprocessing_of", "slide_logits", "upsample", "window_starts",
]
