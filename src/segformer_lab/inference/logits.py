"""Class scores and label maps at the label size: whole image or sliding window, with
optional multi-scale and flip test-time augmentation.

The model returns logits at stride 4; they are upsampled (bilinear,
``align_corners=False``) once to the size that is scored. A sliding window upsamples
each window's logits to the window and averages where windows overlap (as mmseg); that
average is resized to ``out_size`` only when the input is not already at that size. An
image no larger than the crop is one window: exactly whole-image inference. Several
views (scales, flip) are combined by averaging softmax probabilities.

Memory: everything is computed one band of output rows at a time (``logit_bands``,
``bands.py``), so ``predict_labels`` never holds a full-size ``[B, K, H, W]`` map: what
it holds beyond its label map is the stride-4 logits of the rows of windows that cover
the current band plus a band of about ``BAND_BYTES``. ``predict_logits`` returns the
full-size scores, so it holds one such map (its result) and no second one.

``MODES`` (``data.preprocessing``, re-exported here) names the inference modes.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import MODES
from ..models import SegmentationModel
from .bands import SlideSource, WholeSource, resized_rows

MAX_SCALE = 8.0  # a test-time scale multiplies the input's pixels by its square
BAND_BYTES = 64 * 2**20  # the score rows computed at once (per view, about)

Pair = int | Sequence[int]


def _pair(value: Pair) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _source(model: nn.Module, x: torch.Tensor, mode: str, crop: Pair, stride: Pair,
            flipped: bool = False) -> WholeSource | SlideSource:
    """One view's scores: the whole input's logits, or a window average (a single window
    covering the input is the whole input)."""
    if mode == "slide":
        (crop_h, crop_w), (stride_h, stride_w) = _pair(crop), _pair(stride)
        if not (crop_h >= x.shape[-2] and crop_w >= x.shape[-1]):
            return SlideSource(model, x, (crop_h, crop_w), (stride_h, stride_w), flipped)
    return WholeSource(model(x.flip(-1) if flipped else x))


def check_settings(mode: str = "whole", crop: Pair = 512, stride: Pair = 341,
                   scales: Sequence[float] = (1.0,)) -> None:
    """The inference settings, checked before any image (a ``ValueError`` naming the
    setting): a known mode, windows of sides >= the model's smallest input moved by 1..crop
    pixels (a larger stride leaves pixels no window sees), and one or more finite scales in
    (0, ``MAX_SCALE``]."""
    if mode not in MODES:
        raise ValueError(f"unknown inference mode {mode!r}; choose one of {MODES}")
    (crop_h, crop_w), (stride_h, stride_w) = _pair(crop), _pair(stride)
    crop_text = f"{crop_h}" if crop_h == crop_w else f"{crop_h}x{crop_w}"
    stride_text = f"{stride_h}" if stride_h == stride_w else f"{stride_h}x{stride_w}"
    if min(crop_h, crop_w) < SegmentationModel.min_size:
        raise ValueError(f"crop {crop_text}: a window's sides must be >= {SegmentationModel.min_size}, the model's "
                         "smallest input")
    if min(stride_h, stride_w) < 1 or stride_h > crop_h or stride_w > crop_w:
        raise ValueError(f"need 1 <= stride <= crop, got stride {stride_text} for crop {crop_text} (a larger stride "
                         "leaves pixels no window covers)")
    if not scales:
        raise ValueError("need at least one scale")
    for scale in scales:
        if not 0 < scale <= MAX_SCALE:  # also false for nan
            raise ValueError(f"scale {scale}: scales must be in (0, {MAX_SCALE:g}]")


def slide_logits(model: nn.Module, pixel_values: torch.Tensor, crop: Pair, stride: Pair) -> torch.Tensor:
    """Logits at the input size from overlapping ``crop`` windows, averaged. Windows are
    clipped to the image; when one window covers it, this is whole-image inference and
    the model's stride-4 logits come back as they are (nothing resized)."""
    check_settings("slide", crop, stride, (1.0,))
    source = _source(model, pixel_values, "slide", crop, stride)
    return source.rows(0, source.size[0])


def logit_bands(model: nn.Module, pixel_values: torch.Tensor, out_size: Sequence[int], mode: str = "whole",
                crop: Pair = 512, stride: Pair = 341, scales: Sequence[float] = (1.0,),
                flip: bool = False) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(start, stop, scores)``: rows ``start:stop`` of ``predict_logits``'s result, top
    to bottom, each band about ``BAND_BYTES`` per view."""
    check_settings(mode, crop, stride, scales)
    out_h, out_w = out_size = tuple(int(s) for s in out_size)
    views = []
    for scale in scales:
        x = pixel_values
        if scale != 1.0:
            size = [max(1, round(side * scale)) for side in x.shape[-2:]]
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        views.extend((_source(model, x, mode, crop, stride, flipped), flipped) for flipped in (False, True)[:1 + flip])
    row_bytes = pixel_values.shape[0] * max(max(out_w, source.size[1] * source.size[0] / out_h)
                                            * source.channels * source.dtype.itemsize for source, _ in views)
    band = max(1, int(BAND_BYTES // row_bytes))
    for start in range(0, out_h, band):
        stop = min(out_h, start + band)
        probabilities = None
        for source, flipped in views:
            logits = resized_rows(source.rows, source.size, out_size, start, stop)
            if flipped:
                logits = logits.flip(-1)
            if len(views) == 1:
                break
            p = logits.float().softmax(1)
            probabilities = p if probabilities is None else probabilities.add_(p)
        yield start, stop, logits if len(views) == 1 else probabilities.div_(len(views)).log_()


def predict_logits(model: nn.Module, pixel_values: torch.Tensor, out_size: Sequence[int], mode: str = "whole",
                   crop: Pair = 512, stride: Pair = 341, scales: Sequence[float] = (1.0,),
                   flip: bool = False) -> torch.Tensor:
    """Class scores ``[B, K, *out_size]`` for ``pixel_values [B, 3, H, W]``.

    With one view (a single scale, no flip) the result is the model's logits, upsampled;
    with several it is the log of the views' mean softmax probabilities, so in both
    cases ``softmax`` of the result gives probabilities and ``argmax`` the prediction.
    ``scales`` resize the input (bilinear) before the model; ``flip`` adds the
    horizontally flipped input of each scale. For a label map, ``predict_labels`` needs
    far less memory.
    """
    scores = None
    for start, stop, band in logit_bands(model, pixel_values, out_size, mode, crop, stride, scales, flip):
        if scores is None:
            scores = band.new_empty(*band.shape[:2], *out_size)
        scores[..., start:stop, :] = band
    return scores


def predict_labels(model: nn.Module, pixel_values: torch.Tensor, out_size: Sequence[int], mode: str = "whole",
                   crop: Pair = 512, stride: Pair = 341, scales: Sequence[float] = (1.0,), flip: bool = False,
                   probabilities: bool = False, confidence: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """``predict_logits(...).argmax(1)``, int64 ``[B, *out_size]``, computed band by band:
    no full-size score map is held. With ``probabilities``, also the softmax
    probabilities, float32 ``[B, K, *out_size]`` (that one map is then held); with
    ``confidence``, also the probability of the predicted class, float32 ``[B, *out_size]``
    (the softmax's maximum, band by band: no ``[B, K, ...]`` map). Extras follow the
    labels in that order: ``(labels, probabilities, confidence)``."""
    batch = pixel_values.shape[0]
    labels = torch.empty(batch, *out_size, dtype=torch.int64, device=pixel_values.device)
    probs = None
    top = torch.empty(batch, *out_size, dtype=torch.float32, device=pixel_values.device) if confidence else None
    for start, stop, band in logit_bands(model, pixel_values, out_size, mode, crop, stride, scales, flip):
        labels[:, start:stop] = band.argmax(1)
        if probabilities or confidence:
            p = band.float().softmax(1)
            if probabilities:
                if probs is None:
                    probs = band.new_empty(*band.shape[:2], *out_size, dtype=torch.float32)
                probs[..., start:stop, :] = p
            if confidence:
                top[:, start:stop] = p.amax(1)
    extras = [x for x, wanted in ((probs, probabilities), (top, confidence)) if wanted]
    return (labels, *extras) if extras else labels
