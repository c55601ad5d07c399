"""``Segmenter``: a model as a function from an image to a label map, and what it is built
from (a checkpoint, a registered name or a model) with the names of its classes.

::

    import segformer_lab as sl

    seg = sl.Segmenter("runs/b0")                       # any checkpoint load_model reads
    labels = seg.predict("street.jpg")                  # int64 [H, W] at the image's size
    labels, probs = seg.predict(image, probabilities=True)   # probs: float32 [K, H, W]
    labels, confidence = seg.predict(image, confidence=True)  # float32 [H, W]: p of the predicted class
    seg.segments(image)       # transformers' pipeline shape: [{"score", "label", "mask"}, ...]
    seg.overlay(image, labels).save("overlay.jpg")      # colours + legend
    seg.label_image(labels).save("labels.png")          # palette PNG, pixel = class index

Images are paths, PIL images, arrays or tensors, read by ``load_rgb`` (the same pixels
whatever the form; photos turned upright by their EXIF orientation). They are resized, normalised
and run (whole, or in ``slide`` windows) as the model's ``Preprocessing`` says (the one
its training stored with it: ``config.json``, a run's checkpoint, an ONNX file's
metadata, a Hub checkpoint's ``preprocessor_config.json``); the options given here
(``size``, ``scale``, ``multiple_of``, ``mode``, ``crop``, ``stride``, or a whole
``preprocessing``) go over it, and a model that stores none runs images at their own size
(sides below 32 scaled up), ImageNet's mean/std, whole: ``preprocessing_line`` says which.
The logits are upsampled once, to the image's own size. Inference itself is
``predict_labels`` (band by band: no full-size score map unless ``probabilities`` are
asked for; ``confidence`` needs none).

Class names and colours are the model's own (its config's ``class_names`` and
``palette``, which training and ``load_model`` fill in), else ``resolve_class_names``'s
fallback (ADE20K's for 150 classes, else ``class k``, said once in the log).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from ..data import IMAGE_DEFAULT, Preprocessing, choose_preprocessing
from ..models import SegmentationModel, open_model
from ..models.labels import resolve_class_names
from .colours import label_image, overlay_image, palette_for
from .devices import resolve_device
from .images import load_rgb
from .logits import check_settings, predict_labels
from .optimize import optimize_for_inference

log = logging.getLogger("segformer_lab")


# --- the API --------------------------------------------------------------------------
def _groups(rgbs: list[np.ndarray], batch_size: int, size_of) -> list[list[np.ndarray]]:
    """Consecutive images of equal size (original and model input), at most ``batch_size``."""
    groups: list[list[np.ndarray]] = []
    for rgb in rgbs:
        last = groups[-1] if groups else None
        if (
            last is not None
            and len(last) < batch_size
            and last[0].shape == rgb.shape
            and size_of(*last[0].shape[:2]) == size_of(*rgb.shape[:2])
        ):
            last.append(rgb)
        else:
            groups.append([rgb])
    return groups


class Segmenter:
    """Semantic segmentation of single images with a trained model.

    ``checkpoint_or_model``: a checkpoint path (anything ``load_model`` reads), a
    registered model name (random weights; ``num_classes`` sets its classes) or a
    ``SegmentationModel``. ``preprocessing``: how images reach the model (default: the
    model's own; see the module notes); ``size`` (a fixed ``(H, W)``), ``scale`` (keep the
    aspect ratio within ``(long, short)``), ``own_size`` (no resize), ``multiple_of``
    (sides rounded up, as mmseg's AlignedResize with 32), ``mode`` (``"whole"`` or
    ``"slide"``: ``crop`` windows every ``stride`` pixels, averaged) change it. ``scales``
    and ``flip``: test-time augmentation (probabilities averaged).
    ``class_names``: default the model's own (its config's, e.g. a checkpoint's
    ``id2label``), else ADE20K's for 150 classes, else ``class k``.
    """

    def __init__(
        self,
        checkpoint_or_model: str | os.PathLike | SegmentationModel,
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
        scale: Sequence[int] | None = None,
        own_size: bool = False,
        preprocessing: Preprocessing | None = None,
    ) -> None:
        self._set_options(device, size, mode, crop, stride, scales, flip, multiple_of, scale, own_size)
        self.model = optimize_for_inference(open_model(checkpoint_or_model, num_classes=num_classes).to(self.device)
                                            .eval())
        self.num_classes = self.model.config.num_classes
        config = self.model.config
        source = config.name if isinstance(checkpoint_or_model, SegmentationModel) else str(checkpoint_or_model)
        self._set_classes(class_names, config.class_names, source, config.palette)
        self._set_preprocessing(preprocessing or config.preprocessing, IMAGE_DEFAULT,
                                "the given preprocessing" if preprocessing else source)

    def _set_preprocessing(self, stored: Preprocessing | None, default: Preprocessing, source: str) -> None:
        """The preprocessing images get (shared with ``OnnxSegmenter``): the options given
        over ``stored`` (the model's), else over ``default``; ``preprocessing_line`` says which."""
        self.preprocessing, self.preprocessing_line = choose_preprocessing(stored, default, source, **self._given)
        check_settings(**self.preprocessing.inference, scales=self.scales)  # before any image
        log.debug("%s", self.preprocessing_line)

    def _set_classes(self, class_names: Sequence[str] | None, stored: Sequence[str] | None, source: str,
                     stored_palette: Any) -> None:
        """Names and colours of the classes (shared with ``OnnxSegmenter``): ``class_names``
        if given, else those ``source`` stores, else the defaults (``resolve_class_names``)."""
        given, where = (class_names, "class_names") if class_names is not None else (stored, source)
        self.class_names = resolve_class_names(given, self.num_classes, where)
        self.palette = palette_for(self.num_classes, stored_palette)

    def _set_options(self, device, size, mode, crop, stride, scales, flip, multiple_of, scale, own_size) -> None:
        """Check and keep the inference settings (shared with ``OnnxSegmenter``)."""
        if sum((size is not None, scale is not None, own_size)) > 1:
            raise ValueError("give one of size (a fixed H x W), scale (keep the aspect ratio) and own_size")
        if size is not None and (len(size) != 2 or min(size) < SegmentationModel.min_size):
            raise ValueError(f"size must be (H, W) with sides >= {SegmentationModel.min_size}, got {size}")
        self.device = resolve_device(device)
        self._given = {"own_size": own_size, "size": size, "scale": scale, "multiple_of": multiple_of, "mode": mode,
                       "crop": crop, "stride": stride}
        self.scales, self.flip = tuple(scales), flip

    def __repr__(self) -> str:
        return (
            f"Segmenter({self.model.config.name}, classes={self.num_classes}, device={self.device}, "
            f"{self.preprocessing.describe()})"
        )

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size an image of ``height`` x ``width`` runs at."""
        return self.preprocessing.input_size(height, width, SegmentationModel.min_size)

    def predict(self, image: Any, probabilities: bool = False, confidence: bool = False):
        """The label map ``int64 [H, W]`` at the image's size; with ``probabilities``,
        ``(labels, probabilities float32 [K, H, W])``; with ``confidence``, ``(labels,
        confidence float32 [H, W])``, the probability of the predicted class (computed band
        by band: no ``[K, H, W]`` map is held); with both, ``(labels, probabilities,
        confidence)``."""
        return self.predict_batch([image], probabilities=probabilities, confidence=confidence, batch_size=1)[0]

    @torch.inference_mode()
    def predict_batch(self, images: Iterable[Any], probabilities: bool = False, batch_size: int = 8,
                      confidence: bool = False) -> list:
        """``predict`` for several images; consecutive images of the same size run as one
        batch of up to ``batch_size``."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rgbs = [load_rgb(image) for image in images]
        results: list = []
        for group in _groups(rgbs, batch_size, self.input_size):
            out_size = group[0].shape[:2]
            x = torch.cat([self.preprocessing.pixel_values(rgb, self.device) for rgb in group])
            predicted = predict_labels(
                self.model, x, out_size, **self.preprocessing.inference, scales=self.scales, flip=self.flip,
                probabilities=probabilities, confidence=confidence,
            )  # fmt: skip
            if not (probabilities or confidence):
                results.extend(predicted.cpu().numpy())
                continue
            arrays = [t.cpu().numpy() for t in predicted]
            results.extend(tuple(a[i] for a in arrays) for i in range(len(group)))
        return results

    def segments(self, image: Any) -> list[dict[str, Any]]:
        """The result shape of transformers' ``pipeline("image-segmentation")`` (semantic
        subtask): per class present, in class order, ``{"score": float, "label": name,
        "mask": PIL image "L", 255 on the class, 0 elsewhere}``. ``score`` is the mean
        confidence over the mask (transformers' semantic subtask gives None there)."""
        return self.segments_of(*self.predict(image, confidence=True))

    def segments_of(self, labels: np.ndarray, confidence: np.ndarray) -> list[dict[str, Any]]:
        """``segments`` from a prediction already made (``predict(..., confidence=True)``)."""
        segments = []
        for k in np.unique(labels):
            mask = labels == k
            segments.append({"score": float(confidence[mask].mean()), "label": self.class_names[k],
                             "mask": Image.fromarray(mask.astype(np.uint8) * 255, mode="L")})
        return segments

    def label_image(self, labels: np.ndarray):
        """The label map as a palette PNG image (pixel = class index)."""
        return label_image(labels, self.palette)

    def overlay(self, image: Any, labels: np.ndarray | None = None, alpha: float = 0.5, legend: bool = True):
        """The image blended with the colours of its labels (predicted if not given),
        with a legend of the classes present."""
        rgb = load_rgb(image)
        if labels is None:
            labels = self.predict(rgb)
        return overlay_image(rgb, labels, self.palette, self.class_names, alpha=alpha, legend=legend)
