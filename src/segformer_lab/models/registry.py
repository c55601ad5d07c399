"""Named model variants: names -> ``ModelConfig``.

A variant is a function returning a ``ModelConfig`` (like timm's ``@register_model``);
``get_config(name, **overrides)`` looks one up. Nothing here builds a model: that is
``models.factory`` (``create_model(name)``), above the model classes.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
from typing import Callable

from .config import DecoderConfig, ModelConfig, StageConfig, mit_stages

_REGISTRY: dict[str, Callable[[], ModelConfig]] = {}


def register_model(fn: Callable[[], ModelConfig], name: str | None = None) -> Callable[[], ModelConfig]:
    """Register ``fn`` (returning a ``ModelConfig``) under ``name`` or its function name."""
    name = name or fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style wildcard."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_config(name: str, **overrides) -> ModelConfig:
    """The ``ModelConfig`` of a registered model, with top-level fields overridden.

    Names are case-insensitive and accept dashes (``SegFormer-B0`` is ``segformer_b0``)."""
    name = name.lower().replace("-", "_")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known models: {', '.join(list_models())}"
        raise KeyError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]().replace(name=name, **overrides)


# --- SegFormer B0-B5 (Xie et al., 2021; configurations as in the MiT paper and on the Hub)
def _segformer(widths, depths, decoder_width) -> ModelConfig:
    return ModelConfig(stages=mit_stages(widths, depths), decoder=DecoderConfig(width=decoder_width))


@register_model
def segformer_b0() -> ModelConfig:
    return _segformer((32, 64, 160, 256), (2, 2, 2, 2), 256)


@register_model
def segformer_b1() -> ModelConfig:
    return _segformer((64, 128, 320, 512), (2, 2, 2, 2), 256)


@register_model
def segformer_b2() -> ModelConfig:
    return _segformer((64, 128, 320, 512), (3, 4, 6, 3), 768)


@register_model
def segformer_b3() -> ModelConfig:
    return _segformer((64, 128, 320, 512), (3, 4, 18, 3), 768)


@register_model
def segformer_b4() -> ModelConfig:
    return _segformer((64, 128, 320, 512), (3, 8, 27, 3), 768)


@register_model
def segformer_b5() -> ModelConfig:
    return _segformer((64, 128, 320, 512), (3, 6, 40, 3), 768)


# --- SegFormer with 2-D RoPE in every stage's attention (axial or mixed, rope-vit)
def _register_rope_variants() -> None:
    for base in list_models("segformer_b?"):
        for kind in ("axial", "mixed"):
            register_model(
                lambda base=base, kind=kind: _REGISTRY[base]().with_stages(pos_encoding=kind), f"{base}_rope_{kind}"
            )


_register_rope_variants()


# --- BoostFormer (the lightweight SegFormer-B2 of the BoostFormer seed; docs/models.md)
POOLFORMER_STAGE = dict(mixer="pooling", norm="batch", norm_placement="post", layer_scale=1e-5)
POOLED_KV_STAGE = dict(mixer="pooled", kv_pooling="adaptive", kv_grid=7, output_projection=False, norm_placement="post")


def _boostformer(widths, depths, decoder_width) -> ModelConfig:
    """Pooling patch embeddings and Mix-CFN everywhere; PoolFormer blocks (post-BN, layer
    scale) in stages 1-2, pooled-KV attention without output projection (post-LN) in
    stages 3-4; no final stage norms; weighted-sum decoder."""
    config = _segformer(widths, depths, decoder_width)
    config = config.with_stages(
        patch_embed="pooling", ffn="mix_cfn", final_norm=False, **_per_stage(POOLFORMER_STAGE, POOLED_KV_STAGE)
    )
    return config.replace(decoder={"type": "weighted_sum"})


def _per_stage(first_two: dict, last_two: dict) -> dict[str, list]:
    """Stage fields for ``with_stages``: ``first_two`` in stages 1-2, ``last_two`` in 3-4,
    each field at its default where the other group sets it."""
    defaults = {f.name: f.default for f in dataclasses.fields(StageConfig)}
    names = sorted(set(first_two) | set(last_two))
    return {n: [first_two.get(n, defaults[n])] * 2 + [last_two.get(n, defaults[n])] * 2 for n in names}


@register_model
def boostformer_b2() -> ModelConfig:
    return _boostformer((64, 128, 320, 512), (3, 4, 6, 3), 768)


@register_model
def boostformer_b0() -> ModelConfig:
    return _boostformer((32, 64, 160, 256), (2, 2, 2, 2), 256)


def _register_boostformer_rope_variants() -> None:
    """RoPE in the pooled-KV attention of stages 3-4 (stages 1-2 have no attention)."""
    for base in ("boostformer_b0", "boostformer_b2"):
        for kind in ("axial", "mixed"):
            register_model(
                lambda base=base, kind=kind: _REGISTRY[base]().with_stages(pos_encoding=["none", "none", kind, kind]),
                f"{base}_rope_{kind}",
            )


_register_boostformer_rope_variants()


# --- The BoostFormer seed's ablation study, one row each (docs/models.md)
def _ablation(name: str, base: str, build: Callable[[ModelConfig], ModelConfig]) -> None:
    register_model(lambda: build(_REGISTRY[base]()), name)


ABLATIONS: dict[str, tuple[str, Callable[[ModelConfig], ModelConfig]]] = {
    # token mixers in every block of SegFormer-B2
    "segformer_b2_xca": ("segformer_b2", lambda c: c.with_stages(mixer="xca", num_heads=8)),
    "segformer_b2_separable": ("segformer_b2", lambda c: c.with_stages(mixer="separable", sr_ratio=1)),
    "segformer_b2_separable_sr": ("segformer_b2", lambda c: c.with_stages(mixer="separable")),
    "segformer_b2_deformable": (
        "segformer_b2",
        lambda c: c.with_stages(deformable_blocks=[(), (), (1, 3, 5), (1,)]),
    ),
    "segformer_b2_irmb": ("segformer_b2", lambda c: c.with_stages(mixer="irmb", mixer_expansion=[2.0, 3.0, 4.0, 4.0])),
    "segformer_b2_pooled_kv": ("segformer_b2", lambda c: c.with_stages(mixer="pooled")),
    "segformer_b2_pooled_sr": ("segformer_b2", lambda c: c.with_stages(mixer="pooled", kv_pooling="average")),
    "segformer_b2_poolformer": ("segformer_b2", lambda c: c.with_stages(**_per_stage(POOLFORMER_STAGE, {}))),
    # one component changed
    "segformer_b2_no_selfoutput": ("segformer_b2", lambda c: c.with_stages(output_projection=False)),
    "segformer_b2_local_connection": ("segformer_b2", lambda c: c.with_stages(local_connection=True)),
    "segformer_b2_mix_cfn": ("segformer_b2", lambda c: c.with_stages(ffn="mix_cfn")),
    "segformer_b2_pooling_embed": ("segformer_b2", lambda c: c.with_stages(patch_embed="pooling")),
    "segformer_b2_weighted_sum": ("segformer_b2", lambda c: c.replace(decoder={"type": "weighted_sum"})),
    "segformer_b2_depths_2242": ("segformer_b2", lambda c: c.with_stages(depth=[2, 2, 4, 2])),
    "segformer_b2_resizer_input": ("segformer_b2", lambda c: c.replace(input_resizer=(512, 512))),
    "segformer_b2_resizer_decoder": ("segformer_b2", lambda c: c.replace(decoder={"resizer": True})),
    # BoostFormer variants for mobile runtimes
    "boostformer_b2_relu6": (
        "boostformer_b2",
        lambda c: c.with_stages(act="relu6").replace(decoder={"act": "relu6"}),
    ),
    "boostformer_b2_groupnorm": ("boostformer_b2", lambda c: c.with_stages(ffn_norm="group", norm=["group", "group", "layer", "layer"])),
}

for _name, (_base, _build) in ABLATIONS.items():
    _ablation(_name, _base, _build)
