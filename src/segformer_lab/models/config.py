"""Serialisable descriptions of whole models.

A ``ModelConfig`` says everything needed to build a model: per-stage encoder settings,
the decoder, the number of classes. It round-trips through plain dicts (and so JSON or
YAML) with ``to_dict`` / ``from_dict``; ``config.json`` next to saved weights is exactly
``to_dict()``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any

DECODER_TYPES = ("all_mlp",)
POS_ENCODINGS = ("none", "axial", "mixed")
KEY_POSITIONS = ("centre", "pooled")


class ConfigError(ValueError):
    """A configuration that cannot describe a valid model."""


@dataclass(frozen=True)
class StageConfig:
    """One encoder stage: a patch embedding followed by ``depth`` transformer blocks."""

    width: int
    depth: int
    num_heads: int
    sr_ratio: int
    patch_size: int = 3
    stride: int = 2
    mlp_ratio: float = 4.0
    pos_encoding: str = "none"  # rotary embedding in this stage's attention: none, axial, mixed

    def validate(self, index: int) -> None:
        where = f"stage {index}"
        for name in ("width", "depth", "num_heads", "sr_ratio", "patch_size", "stride"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ConfigError(f"{where}: width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"{where}: mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ConfigError(f"{where}: pos_encoding {self.pos_encoding!r} is unknown; choose one of {POS_ENCODINGS}")
        if self.pos_encoding != "none" and (self.width // self.num_heads) % 4:
            raise ConfigError(
                f"{where}: 2-D RoPE needs a head dimension divisible by 4, got {self.width // self.num_heads}"
            )


@dataclass(frozen=True)
class RopeConfig:
    """Settings shared by the stages that use rotary position embeddings.

    ``theta``: base of the frequencies (None: rope-vit's 100 for axial, 10 for mixed).
    ``key_positions``: how a key of a reduced map is placed: ``"centre"`` of its window
    (exact), or ``"pooled"`` rotation factors (the SegFormer-with-RoPE seed's variant).
    ``reference_size``: None keeps integer grid positions (extrapolation to larger
    inputs); an input size ``(H, W)`` rescales every grid to the one that size gives
    (interpolation).
    """

    theta: float | None = None
    key_positions: str = "centre"
    reference_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.reference_size is not None:
            object.__setattr__(self, "reference_size", tuple(self.reference_size))

    def validate(self) -> None:
        if self.theta is not None and self.theta <= 1:
            raise ConfigError(f"rope theta must be > 1, got {self.theta}")
        if self.key_positions not in KEY_POSITIONS:
            raise ConfigError(f"rope key_positions must be one of {KEY_POSITIONS}, got {self.key_positions!r}")
        if self.reference_size is not None and (len(self.reference_size) != 2 or min(self.reference_size) < 1):
            raise ConfigError(f"rope reference_size must be (height, width), got {self.reference_size}")


@dataclass(frozen=True)
class DecoderConfig:
    """The decode head. ``fold`` runs the all-MLP head with ``linear_fuse`` folded into the
    per-stage projections (same function, a fraction of the cost); ``fold=False`` runs the
    published computation literally, for reference and profiling."""

    type: str = "all_mlp"
    width: int = 256
    dropout: float = 0.1
    fold: bool = True

    def validate(self) -> None:
        if self.type not in DECODER_TYPES:
            raise ConfigError(f"decoder type {self.type!r} is unknown; choose one of {DECODER_TYPES}")
        if self.width < 1:
            raise ConfigError(f"decoder width must be >= 1, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"decoder dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class ModelConfig:
    """A whole segmentation model: encoder stages, decoder, classes."""

    stages: tuple[StageConfig, ...]
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    rope: RopeConfig = field(default_factory=RopeConfig)
    num_classes: int = 150
    in_channels: int = 3
    drop_path_rate: float = 0.1
    name: str = "custom"

    def __post_init__(self) -> None:
        # Accept lists/dicts (as read from JSON) and normalise them to the typed form.
        stages = tuple(s if isinstance(s, StageConfig) else StageConfig(**s) for s in self.stages)
        object.__setattr__(self, "stages", stages)
        if isinstance(self.decoder, dict):
            object.__setattr__(self, "decoder", DecoderConfig(**self.decoder))
        if isinstance(self.rope, dict):
            object.__setattr__(self, "rope", RopeConfig(**self.rope))
        self.validate()

    def validate(self) -> None:
        if not self.stages:
            raise ConfigError("a model needs at least one encoder stage")
        for i, stage in enumerate(self.stages):
            stage.validate(i)
        self.decoder.validate()
        self.rope.validate()
        if self.num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.in_channels < 1:
            raise ConfigError(f"in_channels must be >= 1, got {self.in_channels}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(s.width for s in self.stages)

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(s.depth for s in self.stages)

    @property
    def output_stride(self) -> int:
        """Down-sampling factor of the first stage: logits come out at this stride."""
        return self.stages[0].stride

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with top-level fields changed (``num_classes=19``, ``drop_path_rate=0``, ...).

        Nested fields are changed with ``decoder={...}`` or ``rope={...}`` (merged into
        the current ones), or ``stages=[...]``.
        """
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - valid)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid fields: {sorted(valid)}")
        for name in ("decoder", "rope"):
            if isinstance(changes.get(name), dict):
                changes[name] = dataclasses.replace(getattr(self, name), **changes[name])
        return dataclasses.replace(self, **changes)

    def with_pos_encoding(self, kind: str) -> ModelConfig:
        """The same model with ``kind`` position encoding in every stage."""
        return self.replace(stages=[dataclasses.replace(s, pos_encoding=kind) for s in self.stages])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["rope"]["reference_size"] is not None:
            d["rope"]["reference_size"] = list(d["rope"]["reference_size"])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid fields: {sorted(valid)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


def mit_stages(widths, depths, heads=(1, 2, 5, 8), sr_ratios=(8, 4, 2, 1)) -> tuple[StageConfig, ...]:
    """The four Mix Transformer stages: patch 7 stride 4, then patch 3 stride 2."""
    return tuple(
        StageConfig(width=w, depth=d, num_heads=h, sr_ratio=r, patch_size=7 if i == 0 else 3, stride=4 if i == 0 else 2)
        for i, (w, d, h, r) in enumerate(zip(widths, depths, heads, sr_ratios))
    )
