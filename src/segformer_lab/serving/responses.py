"""The answers to ``POST /`` (see ``requests.OUTPUTS``), made from one prediction: the
label map and the confidence of its class per pixel."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
from PIL import Image

from ..inference import Segmenter


def encoded(image: Image.Image, media_type: str = "image/png") -> bytes:
    """PNG at zlib level 1 (about half the time of PIL's default 6 on masks, whose long
    runs compress well either way), or JPEG."""
    buffer = io.BytesIO()
    if media_type == "image/jpeg":
        image.convert("RGB").save(buffer, format="JPEG", quality=92)
    else:
        image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def segments(segmenter: Segmenter, labels: np.ndarray, confidence: np.ndarray,
             threshold: float | None = None) -> list[dict[str, Any]]:
    """Hugging Face's image-segmentation answer: ``Segmenter.segments`` with each mask a
    base64 PNG of the image's size; ``threshold`` leaves out segments scoring below it."""
    return [
        {"label": segment["label"], "score": segment["score"], "mask": b64(encoded(segment["mask"]))}
        for segment in segmenter.segments_of(labels, confidence)
        if threshold is None or segment["score"] >= threshold
    ]


def maps(segmenter: Segmenter, labels: np.ndarray, confidence: np.ndarray) -> dict[str, Any]:
    """What the page draws from: the label map as raw bytes (row-major, ``uint8``, or
    ``uint16`` little-endian past 256 classes), the confidence as raw ``uint8`` (0..255 =
    0..1), both base64, and the palette PNG it offers for download."""
    dtype = "<u2" if segmenter.num_classes > 256 else "u1"
    return {
        "width": int(labels.shape[1]),
        "height": int(labels.shape[0]),
        "labels_dtype": "uint16" if dtype == "<u2" else "uint8",
        "labels": b64(labels.astype(dtype).tobytes()),
        "confidence": b64(np.rint(confidence * 255).astype(np.uint8).tobytes()),
        "label_png": b64(encoded(segmenter.label_image(labels))),
    }


def render(output: str, media_type: str, segmenter: Segmenter, rgb: np.ndarray, labels: np.ndarray,
           confidence: np.ndarray, parameters: dict[str, Any], alpha: float) -> bytes:
    """The body of the answer ``output`` (``requests.choose_output``)."""
    if output == "segments":
        return json.dumps(segments(segmenter, labels, confidence, parameters.get("threshold"))).encode()
    if output == "maps":
        return json.dumps(maps(segmenter, labels, confidence)).encode()
    if output == "labels":
        return encoded(segmenter.label_image(labels))
    return encoded(segmenter.overlay(rgb, labels, alpha=alpha), media_type)
