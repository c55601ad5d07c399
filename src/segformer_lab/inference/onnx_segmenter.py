"""An exported ``.onnx`` file in place of a checkpoint: ``OnnxModel`` (the file in
onnxruntime as a function ``pixel_values -> logits``, which ``predict_labels`` and the
engine's ``evaluate`` call as they call a model: whole image, sliding window, test-time
augmentation and metrics are the same code), ``OnnxSegmenter`` (the ``Segmenter`` API on
it) and ``open_segmenter`` (either one, from what a user names)::

    seg = OnnxSegmenter("b0.onnx")                  # classes, colours, preprocessing from its metadata
    labels = seg.predict("street.jpg")
    seg = OnnxSegmenter("other.onnx", num_classes=19, mean=(0.5,) * 3, std=(0.5,) * 3)   # no metadata

``OnnxModel`` takes pixel values as the file's preprocessing makes them
(``OnnxModel.preprocessing``: its metadata's ``preprocessing``; a file written before
that carries only ``mean``/``std``, which ``preprocessing_of`` puts over the defaults;
a file without metadata needs them given). onnxruntime runs on the CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data import IMAGE_DEFAULT, IMAGENET_MEAN, IMAGENET_STD, Preprocessing, choose_preprocessing
from ..export.check import OnnxRunner
from ..export.errors import EXPORT_EXTRA_HINT
from ..export.metadata import MetadataError, normalisation, read_metadata
from .devices import resolve_device
from .segmenter import Segmenter

# named normalisations for files without metadata: pixel = (rgb / 255 - mean) / std
NORMALIZATIONS = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # pixels in [-1, 1]
    "unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # pixels in [0, 1]
}
NO_METADATA_HINT = (
    "give its class count and normalisation (--num-classes K, and --normalization "
    f"{'|'.join(NORMALIZATIONS)} or --mean R G B --std R G B; Python: num_classes=, mean=, std=)"
)


def is_onnx_file(source: Any) -> bool:
    """Whether ``source`` names an ONNX file (by its suffix)."""
    return isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".onnx")


def _shape(arg: Any) -> str:
    return "[" + ", ".join(str(d) if d is not None else "?" for d in arg.shape) + "]"


def _takes_images(inputs: list) -> bool:
    """One input ``[batch, 3, height, width]`` (a symbolic channel count is accepted)."""
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        return False
    channels = inputs[0].shape[1]
    return not isinstance(channels, int) or channels == 3


class OnnxModel:
    """An ONNX segmentation file in onnxruntime (CPU), called like a model: ``pixel_values
    [B, 3, H, W]`` (normalised as its ``mean``/``std`` say, any device) -> logits
    ``[B, K, h, w]`` (float32, same device).

    The file must take one input ``[batch, 3, height, width]`` and return logits of rank
    4. ``num_classes``, ``mean``, ``std`` and ``preprocessing`` come from its segformer-lab
    metadata; a file without it (exported elsewhere) needs the first three. Given values
    override the metadata's normalisation; a class count that contradicts the file is
    refused.
    """

    def __init__(self, path: str | os.PathLike, num_classes: int | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such ONNX file")
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ModuleNotFoundError(f"running {self.path} needs onnxruntime: {EXPORT_EXTRA_HINT}") from None
        self.runner = OnnxRunner(self.path, threads)  # a file onnxruntime cannot load: one line
        self.session = self.runner.session
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if not _takes_images(inputs):
            got = ", ".join(f"{i.name} {_shape(i)}" for i in inputs)
            raise ValueError(f"{self.path}: takes {got}: not a segmentation model, which takes one input "
                             "[batch, 3, height, width]")
        if len(outputs[0].shape) != 4:
            raise ValueError(f"{self.path}: its output {outputs[0].name!r} has shape {_shape(outputs[0])} (rank "
                             f"{len(outputs[0].shape)}): not a segmentation model, which returns logits "
                             "[batch, classes, height/4, width/4]")
        self.input, self.output = inputs[0], outputs[0]
        self.metadata = read_metadata(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        if self.metadata is None and (num_classes is None or mean is None or std is None):
            raise MetadataError(f"{self.path} carries no segformer-lab metadata (exported elsewhere?): "
                                + NO_METADATA_HINT)
        stored = self.metadata.num_classes if self.metadata else None
        fixed = self.output.shape[1] if isinstance(self.output.shape[1], int) else None
        for source, count in (("its metadata", stored), ("its output shape", fixed)):
            if num_classes is not None and count is not None and num_classes != count:
                raise ValueError(f"{self.path}: {num_classes} classes asked for, but {source} says {count}")
        self.num_classes = int(num_classes or stored or fixed)
        self.mean, self.std = normalisation(mean if mean is not None else self.metadata.mean,
                                            std if std is not None else self.metadata.std)
        self.name = self.metadata.model if self.metadata else self.path.stem
        self.precision = self.metadata.precision if self.metadata else "unknown"
        self.class_names = self.metadata.class_names if self.metadata else None
        self.palette = self.metadata.palette if self.metadata else None
        stored = self.metadata.preprocessing if self.metadata else None
        self.preprocessing = None if stored is None else stored.replace(mean=self.mean, std=self.std)

    def __repr__(self) -> str:
        return f"OnnxModel({self.path}, {self.name}, classes={self.num_classes}, precision={self.precision})"

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = pixel_values.detach().float().cpu()
        for axis, side in enumerate(self.input.shape):
            if isinstance(side, int) and side != x.shape[axis]:
                raise ValueError(f"{self.path} takes a fixed input {_shape(self.input)}, given "
                                 f"{list(x.shape)}: use a dynamic export, or --size/--mode slide --crop to match")
        return self.runner(x).to(pixel_values.device)


def preprocessing_of(model: Any, default: Preprocessing, source: str, **given: Any) -> tuple[Preprocessing, str]:
    """``choose_preprocessing`` for a ``SegmentationModel`` (its config's) or an
    ``OnnxModel`` (its metadata's; a file that stores only its normalisation keeps it over
    ``default``): the preprocessing and the line that says which."""
    if isinstance(model, OnnxModel):
        return choose_preprocessing(model.preprocessing, default.replace(mean=model.mean, std=model.std), source,
                                    **given)
    return choose_preprocessing(model.config.preprocessing, default, source, **given)


class OnnxSegmenter(Segmenter):
    """``Segmenter`` on an ONNX file: the same preprocessing (the file's), inference modes,
    label maps and overlays. Class names: ``class_names``, else the file's metadata, else
    the defaults; colours from the metadata, else ``palette_for``. ``num_classes``,
    ``mean`` and ``std`` are for files without metadata (see ``OnnxModel``). CPU only.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        size: Sequence[int] | None = None,
        mode: str | None = None,
        crop: int | Sequence[int] | None = None,
        stride: int | Sequence[int] | None = None,
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        multiple_of: int | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        threads: int | None = None,
        scale: Sequence[int] | None = None,
        own_size: bool = False,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        resolve_device(device, onnx=True)
        self._set_options(device, size, mode, crop, stride, scales, flip, multiple_of, scale, own_size)
        self.model = OnnxModel(path, num_classes=num_classes, mean=mean, std=std, threads=threads)
        self.num_classes = self.model.num_classes
        self._set_classes(class_names, self.model.class_names, str(path), self.model.palette)
        self._set_preprocessing(preprocessing or self.model.preprocessing,
                                IMAGE_DEFAULT.replace(mean=self.model.mean, std=self.model.std),
                                "the given preprocessing" if preprocessing else str(path))

    def __repr__(self) -> str:
        return (f"OnnxSegmenter({self.model.path}, {self.model.name}, classes={self.num_classes}, "
                f"precision={self.model.precision}, {self.preprocessing.describe()})")


def open_segmenter(source: Any, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   **options: Any) -> Segmenter:
    """An ``OnnxSegmenter`` for a ``.onnx`` file (``mean``/``std``: see ``OnnxModel``),
    else a ``Segmenter``; ``options`` are theirs."""
    if is_onnx_file(source):
        return OnnxSegmenter(source, mean=mean, std=std, **options)
    if mean is not None or std is not None:
        raise ValueError(f"{source}: the normalisation options are for .onnx files without metadata; a checkpoint "
                         "is normalised as its preprocessing says (ImageNet mean/std when it stores none)")
    return Segmenter(source, **options)
