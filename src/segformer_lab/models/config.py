"""Serialisable descriptions of whole models.

A ``ModelConfig`` says everything needed to build a model: per-stage encoder settings,
the decoder, the number of classes (and, optionally, their names and colours). It
round-trips through plain dicts (and so JSON or YAML) with ``to_dict`` / ``from_dict``;
``config.json`` next to saved weights is exactly ``to_dict()``, where the class names are
``id2label`` (``{"0": "wall", ...}``, transformers' key) and the colours ``palette``
(``[[r, g, b], ...]``), each only when known, and ``preprocessing`` (how the model takes
images: ``data.Preprocessing.to_dict``), when known.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ..data.preprocessing import Preprocessing, PreprocessingError
from ..layers.activation import ACTIVATIONS
from ..layers.attention import KV_POOLINGS
from ..layers.ffn import FFNS, MIX_CFN_NORMS
from ..layers.mixers import GRID_KEY_MIXERS, TOKEN_MIXERS
from ..layers.norm import NORMS
from ..layers.patch_embed import PATCH_EMBEDS
from ..layers.rope import KEY_POSITIONS, POS_ENCODINGS
from .config_checks import ConfigError, check_choice, check_types, field_types, section
from .heads import DROPOUTS, HEADS
from .labels import names_from_id2label, to_id2label

# Names are validated against the tables the model is built from (TOKEN_MIXERS, FFNS,
# NORMS, ACTIVATIONS, PATCH_EMBEDS, POS_ENCODINGS, HEADS, DROPOUTS): they cannot disagree.
DECODER_ACTIVATIONS = ("relu", "relu6")  # of ACTIVATIONS, those the decode head takes
NORM_PLACEMENTS = ("pre", "post")
DEFAULT_NUM_CLASSES = 150  # ADE20K's, the default class count of a segmentation model
# Mix Transformer (MiT, every SegFormer B0-B5): attention heads and key/value reduction
# ratios per stage. No weight stores the heads, so inferring an architecture assumes them.
MIT_HEADS = (1, 2, 5, 8)
MIT_SR_RATIOS = (8, 4, 2, 1)


@dataclass(frozen=True)
class StageConfig:
    """One encoder stage: a patch embedding followed by ``depth`` blocks.

    The defaults are SegFormer's (MiT) stage; every other field selects a component of
    the BoostFormer ablation study (docs/models.md):

    - ``mixer``: the token mixer of every block: ``efficient`` (attention with strided-conv
      reduction by ``sr_ratio``), ``pooled`` (keys/values pooled to ``kv_grid`` x ``kv_grid``
      with ``kv_pooling="adaptive"``, or by ``sr_ratio`` with ``"average"``), ``pooling``
      (PoolFormer), ``xca``, ``separable`` (reduced by ``sr_ratio``), ``deformable``,
      ``irmb`` (values expanded by ``mixer_expansion``). ``deformable_blocks`` lists blocks
      of the stage whose mixer is deformable attention instead.
    - ``output_projection``: the attention output projection (BoostFormer removes it).
    - ``ffn``: ``mix_ffn`` (SegFormer) or ``mix_cfn`` (BoostFormer; inner norm ``ffn_norm``).
    - ``norm`` (``layer``, ``batch``, ``group``) and ``norm_placement``: ``pre`` (before mixer
      and FFN) or ``post`` (no norm before the mixer, one before the FFN, one after the block).
    - ``layer_scale``: initial per-channel gain on both residual branches (None: none).
    - ``patch_embed``: ``overlap`` (strided conv) or ``pooling``; ``final_norm``: LayerNorm at
      the stage output; ``local_connection``: extra residuals from each block's input and
      from the patch embedding to the stage output.
    - ``pos_encoding``: rotary embedding in the attention (``none``, ``axial``, ``mixed``).
    - ``fold``: in eval mode, fold BatchNorms into the layers before them (Mix-CFN); the
      same function, faster. ``False`` runs the published layers literally.
    """

    width: int
    depth: int
    num_heads: int
    sr_ratio: int
    patch_size: int = 3
    stride: int = 2
    mlp_ratio: float = 4.0
    pos_encoding: str = "none"
    mixer: str = "efficient"
    kv_pooling: str = "adaptive"
    kv_grid: int = 7
    mixer_expansion: float = 4.0
    deformable_blocks: tuple[int, ...] = ()
    output_projection: bool = True
    ffn: str = "mix_ffn"
    ffn_norm: str = "batch"
    act: str = "gelu"
    norm: str = "layer"
    norm_placement: str = "pre"
    layer_scale: float | None = None
    patch_embed: str = "overlap"
    final_norm: bool = True
    local_connection: bool = False
    fold: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "deformable_blocks", tuple(self.deformable_blocks))

    def mixer_of_block(self, index: int) -> str:
        return "deformable" if index in self.deformable_blocks else self.mixer

    def validate(self, index: int) -> None:
        where = f"stage {index}"
        check_types(field_types(StageConfig), _fields(self), where)
        for name in ("width", "depth", "num_heads", "sr_ratio", "patch_size", "stride", "kv_grid"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.num_heads:
            raise ConfigError(f"{where}: width {self.width} is not divisible by num_heads {self.num_heads}")
        for name in ("mlp_ratio", "mixer_expansion"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{where}: {name} must be > 0, got {getattr(self, name)}")
        for name, choices in (
            ("mixer", TOKEN_MIXERS), ("kv_pooling", KV_POOLINGS), ("ffn", FFNS), ("ffn_norm", MIX_CFN_NORMS),
            ("act", ACTIVATIONS), ("norm", NORMS), ("norm_placement", NORM_PLACEMENTS),
            ("patch_embed", PATCH_EMBEDS), ("pos_encoding", POS_ENCODINGS),
        ):  # fmt: skip
            check_choice(where, name, getattr(self, name), choices)
        if self.layer_scale is not None and self.layer_scale <= 0:
            raise ConfigError(f"{where}: layer_scale must be > 0 or None, got {self.layer_scale}")
        outside = [i for i in self.deformable_blocks if not 0 <= i < self.depth]
        if outside:
            raise ConfigError(f"{where}: deformable_blocks {outside} are not blocks of a stage of depth {self.depth}")
        if self.mixer == "irmb" and int(self.width * self.mixer_expansion) % self.num_heads:
            raise ConfigError(
                f"{where}: iRMB values of width {int(self.width * self.mixer_expansion)} "
                f"(width x mixer_expansion) do not split into {self.num_heads} heads"
            )
        if self.pos_encoding != "none":
            mixers = sorted({self.mixer_of_block(i) for i in range(self.depth)} - set(GRID_KEY_MIXERS))
            if mixers:
                raise ConfigError(
                    f"{where}: rotary position embeddings ({self.pos_encoding}) need attention whose keys sit on "
                    f"a spatial grid ({', '.join(GRID_KEY_MIXERS)}); {', '.join(mixers)} has none"
                )
            if (self.width // self.num_heads) % 4:
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
        check_types(field_types(RopeConfig), _fields(self), "rope")
        if self.theta is not None and self.theta <= 1:
            raise ConfigError(f"rope theta must be > 1, got {self.theta}")
        if self.key_positions not in KEY_POSITIONS:
            raise ConfigError(f"rope key_positions must be one of {KEY_POSITIONS}, got {self.key_positions!r}")
        if self.reference_size is not None and (len(self.reference_size) != 2 or min(self.reference_size) < 1):
            raise ConfigError(f"rope reference_size must be (height, width), got {self.reference_size}")


@dataclass(frozen=True)
class DecoderConfig:
    """The decode head: ``all_mlp`` (SegFormer: concatenate, then ``linear_fuse``) or
    ``weighted_sum`` (BoostFormer: a learnable scalar per stage, summed).

    ``fold`` runs either head with its fusion folded into the per-stage projections
    (same function, a fraction of the cost); ``fold=False`` runs the published
    computation literally, for reference and profiling. ``resizer`` replaces the
    bilinear upsampling of the stage maps by learnable resizers (ablation; no folding).
    ``dropout_mode``: ``channel`` drops whole feature maps before the classifier, as
    SegFormer's own decode head (mmseg's ``Dropout2d``) did when the published weights
    were trained; ``element`` drops single activations, as transformers' port does.
    """

    type: str = "all_mlp"
    width: int = 256
    dropout: float = 0.1
    dropout_mode: str = "channel"
    fold: bool = True
    act: str = "relu"
    resizer: bool = False

    def validate(self) -> None:
        check_types(field_types(DecoderConfig), _fields(self), "decoder")
        check_choice("decoder", "type", self.type, HEADS)
        check_choice("decoder", "act", self.act, DECODER_ACTIVATIONS)
        check_choice("decoder", "dropout_mode", self.dropout_mode, DROPOUTS)
        if self.width < 1:
            raise ConfigError(f"decoder width must be >= 1, got {self.width}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"decoder dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class ModelConfig:
    """A whole segmentation model: encoder stages, decoder, classes.

    ``class_names`` and ``palette`` (one RGB colour per class) describe the classes, when
    known; they change nothing the model computes, and ``replace(num_classes=...)`` to
    another count drops them (unless new ones are given). ``preprocessing`` says how the
    model takes images (resize, normalisation, inference mode: ``data.Preprocessing``):
    training fills it in, every consumer applies it; None for a model that does not say."""

    stages: tuple[StageConfig, ...]
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    rope: RopeConfig = field(default_factory=RopeConfig)
    num_classes: int = DEFAULT_NUM_CLASSES
    in_channels: int = 3
    drop_path_rate: float = 0.1
    input_resizer: tuple[int, int] | None = None  # learnable resizer of the input to (H, W)
    name: str = "custom"
    class_names: tuple[str, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    preprocessing: Preprocessing | None = None

    def __post_init__(self) -> None:
        # Accept lists/dicts (as read from JSON) and normalise them to the typed form.
        # class_names and palette are normalised (and checked) on their own, below.
        own = {name: kind for name, kind in field_types(ModelConfig).items() if name not in ("class_names", "palette")}
        check_types(own, _fields(self), "config")
        stages = tuple(section(StageConfig, s, f"stage {i}") for i, s in enumerate(self.stages))
        object.__setattr__(self, "stages", stages)
        if self.input_resizer is not None:
            object.__setattr__(self, "input_resizer", tuple(self.input_resizer))
        object.__setattr__(self, "decoder", section(DecoderConfig, self.decoder, "decoder"))
        object.__setattr__(self, "rope", section(RopeConfig, self.rope, "rope"))
        if self.class_names is not None and not isinstance(self.class_names, str):
            object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))
        if self.palette is not None:
            try:
                object.__setattr__(self, "palette", tuple(tuple(int(c) for c in rgb) for rgb in self.palette))
            except (TypeError, ValueError):
                raise ConfigError(f"palette must be a list of [r, g, b] colours, got {self.palette!r}") from None
        if self.preprocessing is not None and not isinstance(self.preprocessing, Preprocessing):
            try:
                object.__setattr__(self, "preprocessing", Preprocessing.from_dict(self.preprocessing, "config"))
            except PreprocessingError as e:
                raise ConfigError(str(e)) from None
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
        if self.input_resizer is not None and (len(self.input_resizer) != 2 or min(self.input_resizer) < 32):
            raise ConfigError(f"input_resizer must be None or (height, width) >= 32, got {self.input_resizer}")
        names = self.class_names
        if names is not None and (isinstance(names, str) or len(names) != self.num_classes):
            count = "a string" if isinstance(names, str) else f"{len(names)} names"
            raise ConfigError(f"class_names: {count} for num_classes={self.num_classes} (one name per class)")
        if self.palette is not None:
            if len(self.palette) != self.num_classes:
                raise ConfigError(f"palette: {len(self.palette)} colours for num_classes={self.num_classes}")
            bad = [rgb for rgb in self.palette if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb)]
            if bad:
                raise ConfigError(f"palette: colours must be [r, g, b] with 0 <= value <= 255, got {list(bad[0])}")

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
        if changes.get("num_classes", self.num_classes) != self.num_classes:  # the old names describe other classes
            changes = {"class_names": None, "palette": None, **changes}
        return dataclasses.replace(self, **changes)

    def with_stages(self, **fields: Any) -> ModelConfig:
        """A copy with stage fields changed: a list gives one value per stage, anything
        else applies to every stage (``with_stages(mixer="xca")``,
        ``with_stages(ffn=["mix_cfn"] * 4)``)."""
        n = len(self.stages)
        for name, value in fields.items():
            if isinstance(value, list) and len(value) != n:
                raise ConfigError(f"{name}: {len(value)} values for {n} stages")
        per_stage = [
            {name: value[i] if isinstance(value, list) else value for name, value in fields.items()} for i in range(n)
        ]
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(StageConfig)})
        if unknown:
            raise ConfigError(f"unknown stage field(s) {unknown}")
        return self.replace(stages=[dataclasses.replace(s, **c) for s, c in zip(self.stages, per_stage)])

    def published(self) -> ModelConfig:
        """The same model with every folding off: the published computation, literally
        (for reference checks and the profiler's published-architecture count)."""
        return self.with_stages(fold=False).replace(decoder={"fold": False})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: tuples become lists; class names are ``id2label``; class names,
        ``palette`` and ``preprocessing`` are left out when unknown."""
        d = json.loads(json.dumps(asdict(self)))
        names, palette, preprocessing = d.pop("class_names"), d.pop("palette"), d.pop("preprocessing")
        return {**d, **({"id2label": to_id2label(names)} if names is not None else {}),
                **({"palette": palette} if palette is not None else {}),
                **({"preprocessing": preprocessing} if preprocessing is not None else {})}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """The config of a ``to_dict`` dict (``id2label`` becomes ``class_names``)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a model config is a mapping of its fields, got {type(d).__name__}")
        if "id2label" in d:
            d = dict(d)
            try:
                d["class_names"] = names_from_id2label(d.pop("id2label"))
            except ValueError as e:
                raise ConfigError(str(e)) from None
        return section(cls, d, "config")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


def _fields(config: Any) -> dict[str, Any]:
    """A config dataclass's fields and their values, unconverted."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def mit_stages(widths, depths, heads=MIT_HEADS, sr_ratios=MIT_SR_RATIOS) -> tuple[StageConfig, ...]:
    """The four Mix Transformer stages: patch 7 stride 4, then patch 3 stride 2."""
    lengths = {"widths": len(widths), "depths": len(depths), "heads": len(heads), "sr_ratios": len(sr_ratios)}
    if len(set(lengths.values())) > 1:
        raise ConfigError("per-stage settings of different lengths: " + ", ".join(f"{n} {k}" for k, n in lengths.items()))
    return tuple(
        StageConfig(width=w, depth=d, num_heads=h, sr_ratio=r, patch_size=7 if i == 0 else 3, stride=4 if i == 0 else 2)
        for i, (w, d, h, r) in enumerate(zip(widths, depths, heads, sr_ratios))
    )
