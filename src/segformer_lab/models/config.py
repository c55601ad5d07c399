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

    def validate(self, index: int) -> None:
        where = f"stage {index}"
        for name in ("width", "depth", "num_heads", "sr_ratio", "patch_size", "stride"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ConfigError(f"{where}: width {self.width} is not divisible by num_heads {self.num_heads}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"{where}: mlp_ratio must be > 0, got {self.mlp_ratio}")


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
        self.validate()

    def validate(self) -> None:
        if not self.stages:
            raise ConfigError("a model needs at least one encoder stage")
        for i, stage in enumerate(self.stages):
            stage.validate(i)
        self.decoder.validate()
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

        Nested fields are changed with ``decoder={...}`` (merged into the current decoder)
        or ``stages=[...]``.
        """
        valid = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - valid)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid fields: {sorted(valid)}")
        if isinstance(changes.get("decoder"), dict):
            changes["decoder"] = dataclasses.replace(self.decoder, **changes["decoder"])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = [dict(s) for s in d["stages"]]
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
