"""Named model variants and the ``create_model`` entry point.

A variant is a function returning a ``ModelConfig`` (like timm's ``@register_model``);
``create_model(name, **overrides)`` builds it. ``create_model(config=cfg)`` builds any
configuration directly.
"""

from __future__ import annotations

import os
from typing import Callable

from .config import DecoderConfig, ModelConfig, mit_stages
from .segmentor import SegmentationModel

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
    import fnmatch

    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_config(name: str, **overrides) -> ModelConfig:
    """The ``ModelConfig`` of a registered model, with top-level fields overridden.

    Names are case-insensitive and accept dashes (``SegFormer-B0`` is ``segformer_b0``)."""
    name = name.lower().replace("-", "_")
    if name not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known models: {', '.join(list_models())}"
        raise KeyError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]().replace(name=name, **overrides)


def create_model(
    name: str | None = None,
    num_classes: int | None = None,
    pretrained: str | os.PathLike | None = None,
    *,
    config: ModelConfig | None = None,
    reset_classifier: bool = False,
    **overrides,
) -> SegmentationModel:
    """Build a model by registered ``name`` (or from ``config``), optionally loading weights.

    ``pretrained`` is a checkpoint in any supported format (this project's directory,
    Hugging Face directory or file, NVlabs/mmseg ``.pth``); missing and unused keys are
    reported, unexpected ones are errors. With ``reset_classifier=True`` a checkpoint with
    another class count loads everything but the classifier (for fine-tuning).
    """
    if (name is None) == (config is None):
        raise ValueError("pass exactly one of a model name or config=")
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    config = get_config(name, **overrides) if name is not None else config.replace(**overrides)
    model = SegmentationModel(config)
    if pretrained is not None:
        from .checkpoint import load_weights

        load_weights(model, pretrained, reset_classifier=reset_classifier)
    return model


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
    for base in [n for n in list_models("segformer_b?")]:
        for kind in ("axial", "mixed"):
            register_model(lambda base=base, kind=kind: _REGISTRY[base]().with_pos_encoding(kind), f"{base}_rope_{kind}")


_register_rope_variants()
