"""What an exported file carries besides its graph: the ONNX ``metadata_props`` that let
onnxruntime users (and ``eval``/``predict`` of a ``.onnx``) use it with nothing else at
hand: class names and colours, the input normalisation, the output stride, opset,
precision, model name, class count, the model's whole preprocessing (resize, normalisation,
inference mode: ``data.Preprocessing``) and the segformer-lab version that wrote it.

Each value is a string (ONNX's metadata is string to string); lists are JSON::

    segformer_lab_version  "0.1.0"      (its presence marks a file of ours)
    model                  "segformer_b0"
    num_classes            "14"
    class_names            '["sky", "water", ...]'   (optional)
    palette                '[[70, 130, 180], ...]'   (optional; uint8 RGB per class)
    mean, std              '[0.485, 0.456, 0.406]'   pixel = (rgb / 255 - mean) / std
    preprocessing          '{"scale": [2048, 512], ...}'  (optional: Preprocessing.to_dict; its
                           mean/std are the two keys above; files written before it have none)
    input                  "pixel_values"   [batch, 3, height, width], float32
    output_stride          "4"              logits [batch, K, ceil(H/4), ceil(W/4)]
    opset                  "18"
    precision              "float32" | "float16" | "int8" | ...

``read_metadata`` parses them back (from onnxruntime's ``custom_metadata_map``, so
reading needs no ``onnx`` package) and refuses a malformed value by its key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .. import __version__
from ..data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, PreprocessingError

VERSION_KEY = "segformer_lab_version"
OUTPUT_STRIDE = 4  # the model's logits are at 1/4 of the input (models/segmentation_model.py forward contract)


class MetadataError(ValueError):
    """A segformer-lab metadata value of an ONNX file that cannot be used."""


@dataclass(frozen=True)
class OnnxMetadata:
    """The parsed metadata of an exported file."""

    model: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    precision: str
    opset: int
    input: str = "pixel_values"
    output_stride: int = OUTPUT_STRIDE
    class_names: tuple[str, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    preprocessing: Preprocessing | None = None
    version: str = __version__

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` key/value strings."""
        props = {
            VERSION_KEY: self.version, "model": self.model, "num_classes": str(self.num_classes),
            "mean": json.dumps(list(self.mean)), "std": json.dumps(list(self.std)), "input": self.input,
            "output_stride": str(self.output_stride), "opset": str(self.opset), "precision": self.precision,
        }  # fmt: skip
        if self.class_names is not None:
            props["class_names"] = json.dumps(list(self.class_names))
        if self.palette is not None:
            props["palette"] = json.dumps([list(c) for c in self.palette])
        if self.preprocessing is not None:
            props["preprocessing"] = json.dumps(self.preprocessing.to_dict())
        return props


def export_metadata(model: Any, opset: int, precision: str) -> OnnxMetadata:
    """The metadata of an export of ``model`` (a ``SegmentationModel``): its config's name,
    class count, class names, palette and preprocessing (those three when it has them),
    and the normalisation it takes (its preprocessing's, else ImageNet's)."""
    config = model.config
    stored = config.preprocessing
    mean, std = (stored.mean, stored.std) if stored is not None else (IMAGENET_MEAN, IMAGENET_STD)
    metadata = OnnxMetadata(
        model=config.name, num_classes=config.num_classes, mean=_triple(mean, "mean"), std=_triple(std, "std"),
        precision=precision, opset=int(opset), class_names=config.class_names, palette=config.palette,
        preprocessing=stored,
    )  # fmt: skip
    _check_per_class(metadata, config.name)
    return metadata


def write_metadata(proto: Any, metadata: OnnxMetadata) -> None:
    """Set ``metadata``'s props on an ``onnx.ModelProto`` (replacing those of the same key)."""
    props = metadata.to_props()
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(props: Mapping[str, str], source: str) -> OnnxMetadata | None:
    """The metadata in ``props`` (e.g. ``session.get_modelmeta().custom_metadata_map``),
    or None for a file that holds none of ours (no ``segformer_lab_version``). A value
    that does not parse raises ``MetadataError`` naming ``source`` and the key."""
    if VERSION_KEY not in props:
        return None

    def value(key: str, parse, default: Any = None) -> Any:
        if key not in props:
            if default is None:
                raise MetadataError(f"{source}: the segformer-lab metadata has no {key!r}")
            return default
        try:
            return parse(props[key])
        except (ValueError, TypeError) as err:
            raise MetadataError(f"{source}: metadata {key!r} = {props[key][:80]!r} does not parse ({err})") from None

    def names(text: str) -> tuple[str, ...]:
        return tuple(str(n) for n in _json_list(text))

    def colours(text: str) -> tuple[tuple[int, int, int], ...]:
        rows = tuple(tuple(int(v) for v in _json_list(c)) for c in _json_list(text))
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in rows):
            raise ValueError("each colour must be [r, g, b] in 0..255")
        return rows

    def preprocessing(text: str) -> Preprocessing:
        try:
            return Preprocessing.from_dict(json.loads(text), "preprocessing")
        except PreprocessingError as err:
            raise ValueError(str(err)) from None

    metadata = OnnxMetadata(
        model=props.get("model", "unknown"), num_classes=value("num_classes", _positive_int),
        mean=value("mean", lambda t: _triple(_json_list(t), "mean")),
        std=value("std", lambda t: _triple(_json_list(t), "std")),
        precision=props.get("precision", "unknown"), opset=value("opset", int, 0),
        input=props.get("input", "pixel_values"), output_stride=value("output_stride", _positive_int, OUTPUT_STRIDE),
        class_names=value("class_names", names, ()) or None, palette=value("palette", colours, ()) or None,
        preprocessing=value("preprocessing", preprocessing, ()) or None, version=props[VERSION_KEY],
    )  # fmt: skip
    _check_per_class(metadata, source)
    return metadata


def _check_per_class(metadata: OnnxMetadata, source: str) -> None:
    for key in ("class_names", "palette"):
        entries = getattr(metadata, key)
        if entries is not None and len(entries) != metadata.num_classes:
            raise MetadataError(f"{source}: {len(entries)} {key} for {metadata.num_classes} classes")


def _json_list(text: str) -> list:
    value = json.loads(text) if isinstance(text, str) else text
    if not isinstance(value, list):
        raise ValueError("expected a JSON list")
    return value


def _positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise ValueError("expected a positive integer")
    return number


def normalisation(mean: Sequence[float], std: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``mean`` and ``std`` as 3 floats each (std > 0), else ``MetadataError``."""
    return _triple(mean, "mean"), _triple(std, "std")


def _triple(values: Sequence[float], name: str) -> tuple[float, float, float]:
    triple = tuple(float(v) for v in values)
    if len(triple) != 3:
        raise MetadataError(f"{name} needs 3 values (R G B), got {len(triple)}")
    if name == "std" and min(triple) <= 0:
        raise MetadataError(f"std values must be positive, got {list(triple)}")
    return triple  # type: ignore[return-value]
