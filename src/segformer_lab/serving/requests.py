"""What a request brings, checked before it may take a place in the queue: the body
(at most ``max_bytes``, refused from its Content-Length when that says more), the image
in it (raw bytes of any format PIL reads, or Hugging Face's JSON ``{"inputs": base64,
"parameters": {...}}``), its size read from the file's header *before* any pixel is
decoded (a 30000 x 30000 PNG of zeros is ~100 KB: a decompression bomb), and the answer
asked for. Every refusal is a ``RequestError``: an HTTP status and one line."""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..data import DataError, decode_image

# the answers POST / gives: ?output=NAME, else chosen by the Accept header (see choose_output)
OUTPUTS = {
    "segments": "application/json",  # Hugging Face's image-segmentation list (the default)
    "labels": "image/png",  # palette PNG, pixel value = class index
    "overlay": "image/png",  # the image blended with the class colours, with a legend (JPEG by Accept)
    "maps": "application/json",  # the page's: raw label and confidence arrays, and the label PNG
}
# Hugging Face's image-segmentation parameters; only threshold applies to semantic segmentation
PARAMETERS = ("threshold", "mask_threshold", "overlap_mask_area_threshold", "subtask")


class RequestError(Exception):
    """A request the server refuses: ``status`` and a one-line ``message`` (the JSON
    ``{"error": message}`` body), and any ``headers`` (Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


async def read_body(request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``max_bytes``: from the
    Content-Length header before reading, else while it streams in."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise RequestError(413, f"the request body is {int(declared)} bytes; the limit is {max_bytes}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, f"the request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class Payload:
    image: bytes  # the encoded image
    parameters: dict[str, Any]


def parse_payload(body: bytes, content_type: str | None) -> Payload:
    """Raw image bytes, or JSON ``{"inputs": "<base64 image>", "parameters": {...}}``
    (Hugging Face's form, which ``InferenceClient`` sends when it has parameters)."""
    if not body:
        raise RequestError(400, "empty body: POST the image's bytes, or JSON {\"inputs\": \"<base64 image>\"}")
    if (content_type or "").split(";")[0].strip().lower() != "application/json":
        return Payload(body, {})
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(400, f"the JSON body does not parse: {err}") from None
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), str):
        raise RequestError(422, "the JSON body must be an object with \"inputs\": a base64-encoded image")
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError(422, "\"parameters\" must be an object")
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise RequestError(422, f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMETERS)}")
    if parameters.get("subtask") not in (None, "semantic"):
        raise RequestError(422, f"subtask {parameters['subtask']!r}: this model does semantic segmentation only")
    threshold = parameters.get("threshold")
    if threshold is not None and not (isinstance(threshold, (int, float)) and 0 <= threshold <= 1):
        raise RequestError(422, f"threshold must be a number in [0, 1], got {threshold!r}")
    encoded = document["inputs"].split(",", 1)[-1] if document["inputs"].startswith("data:") else document["inputs"]
    try:
        image = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "\"inputs\" is not valid base64") from None
    return Payload(image, parameters)


def decode_checked(data: bytes, max_pixels: int) -> np.ndarray:
    """The image as ``uint8 [H, W, 3]`` RGB; its size is read from the header first and an
    image over ``max_pixels`` refused (413) before its pixels are decoded. Bytes PIL
    does not recognise: 415; a recognised but broken file: 400."""
    try:
        with Image.open(io.BytesIO(data)) as image:  # lazy: reads the header only
            width, height = image.size
    except Image.DecompressionBombError as err:  # PIL's own refusal from the header, past 2 x MAX_IMAGE_PIXELS
        raise RequestError(413, f"the image is too large ({err}); the limit is {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise RequestError(415, "the body is not an image in a format the server reads (PNG, JPEG, WebP...)") from None
    if width * height > max_pixels:
        raise RequestError(413, f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    try:
        return decode_image(data, "the image")
    except DataError as err:
        raise RequestError(400, str(err)) from None


def choose_output(output: str | None, accept: str | None) -> tuple[str, str]:
    """``(output, media type)``: ``?output=`` if given, else by Accept: ``image/png`` the
    label map, ``image/jpeg`` the overlay as JPEG; anything else Hugging Face's segments."""
    accept = (accept or "").lower()
    if output is not None:
        if output not in OUTPUTS:
            raise RequestError(422, f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
        if output == "overlay" and "image/jpeg" in accept:
            return output, "image/jpeg"
        return output, OUTPUTS[output]
    if "image/png" in accept:
        return "labels", "image/png"
    if "image/jpeg" in accept:
        return "overlay", "image/jpeg"
    return "segments", "application/json"
