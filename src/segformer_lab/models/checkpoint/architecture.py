"""Config inference: the ``ModelConfig`` of a segmentation model for a checkpoint, from
this project's config, from a Hugging Face ``config.json``, or from the shapes of a
state dict (our key names)."""

from __future__ import annotations

from typing import Any

import torch

from ..config import (
    DEFAULT_NUM_CLASSES,
    MIT_HEADS,
    MIT_SR_RATIOS,
    ConfigError,
    DecoderConfig,
    ModelConfig,
    StageConfig,
    check_types,
)
from ...data.preprocessing import Preprocessing, PreprocessingError
from ..labels import names_from_id2label
from ..pretrained import CONFIG_NAME, HF_PREPROCESSING_KEY, MODEL_CONFIG_KEY, PREPROCESSOR_NAME, CheckpointError
from ..registry import get_config, list_models
from . import boost_original, rope_original
from .formats import OWN_CLASSIFIER_FORMAT
from .reading import Source


def segmentation_config(source: Source, converted: dict[str, torch.Tensor], notes: list[str]) -> ModelConfig:
    """The segmentation model ``source`` describes; ``notes`` gets what was assumed.

    An ``ImageClassifier``'s config keeps its encoder and gets ``DEFAULT_NUM_CLASSES``
    (ADE20K's) for the decode head, as do encoder-only checkpoints. Its preprocessing is
    the config's own, else that of transformers' ``preprocessor_config.json`` beside it
    (a Hub checkpoint's), else none."""
    config = _described_config(source, converted, notes)
    if config.preprocessing is None and source.image_processor is not None:
        try:
            preprocessing = Preprocessing.from_image_processor(source.image_processor,
                                                               str(source.path / PREPROCESSOR_NAME))
        except PreprocessingError as e:
            raise CheckpointError(str(e)) from None
        config = config.replace(preprocessing=preprocessing)
    return config


def _described_config(source: Source, converted: dict[str, torch.Tensor], notes: list[str]) -> ModelConfig:
    if source.own_config is not None:
        try:
            config = ModelConfig.from_dict(source.own_config)
        except ConfigError as e:
            where = source.path / CONFIG_NAME if source.path.is_dir() else f"{source.path} [{MODEL_CONFIG_KEY!r}]"
            raise CheckpointError(f"{where}: {e}") from None
        if source.format == OWN_CLASSIFIER_FORMAT:
            notes.append(
                f"image classifier ({config.num_classes} image classes): the segmentation head gets "
                f"{DEFAULT_NUM_CLASSES} classes (ADE20K's count)"
            )
            config = config.replace(num_classes=DEFAULT_NUM_CLASSES)
        return config
    if source.format.name == boost_original.FORMAT_NAME:
        return boost_original_config(source, converted, notes)
    if source.hf_config is not None:
        encoder_only = not any(k.startswith("decode_head.") for k in converted)
        try:
            return config_from_hf(source.hf_config, encoder_only, notes)
        except (CheckpointError, ConfigError) as e:
            raise CheckpointError(f"{source.path / CONFIG_NAME}: {e}") from None
    try:
        config = infer_config(converted, notes)
    except CheckpointError as e:
        raise CheckpointError(f"{source.path}: {e}") from None
    if source.format.name == rope_original.NAME:
        notes.append(rope_original.bare_mixed_note())
        return named(rope_original.with_original_rope(config, mixed=True))
    if source.format.name == "huggingface":
        notes.append(rope_original.ambiguous_note(config))
    return config


def boost_original_config(source: Source, converted: dict[str, torch.Tensor], notes: list[str]) -> ModelConfig:
    """The BoostFormer seed's model: its ``config.json`` (a ``SegformerConfig``) or, for a
    bare state dict, what the weights say, read as SegFormer's, then in its layout."""
    # a config.json's encoder-only model says its image classes; a bare file's settings
    # already give its head the default classes
    encoder_only = source.hf_config is not None and not any(k.startswith("decode_head.") for k in converted)
    try:
        settings = boost_original.original_settings(source.hf_config, converted, notes)
        return named(boost_original.as_boostformer(config_from_hf(settings, encoder_only, notes)))
    except (CheckpointError, ConfigError) as e:
        where = source.path / CONFIG_NAME if source.hf_config is not None else source.path
        raise CheckpointError(f"{where}: {e}") from None


# the types of the SegformerConfig entries read here, as JSON gives them
HF_TYPES = {
    "num_encoder_blocks": int, "hidden_sizes": tuple[int, ...], "depths": tuple[int, ...],
    "num_attention_heads": tuple[int, ...], "sr_ratios": tuple[int, ...], "patch_sizes": tuple[int, ...],
    "strides": tuple[int, ...], "mlp_ratios": tuple[float, ...], "num_labels": int, "id2label": dict[str, str],
    "decoder_hidden_size": int, "classifier_dropout_prob": float, "num_channels": int, "drop_path_rate": float,
    "hidden_act": str,
}  # fmt: skip


def config_from_hf(hf: dict[str, Any], encoder_only: bool, notes: list[str]) -> ModelConfig:
    """A ``ModelConfig`` from a ``SegformerConfig`` dict (missing entries take
    transformers' defaults, which are MiT-B0's), or the RoPE project's (``rope_original``); its
    ``id2label`` names the classes (transformers' ``LABEL_k`` placeholders name nothing);
    ``segformer_lab_preprocessing`` (written by ``save_transformers``) is our preprocessing in full.
    An entry of the wrong type is a ``ConfigError`` naming it (its own name, not ours)."""
    check_types(HF_TYPES, hf)
    if hf.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"hidden_act {hf['hidden_act']!r} is not supported (SegFormer uses 'gelu')")
    n = hf.get("num_encoder_blocks", 4)
    lists = {
        "hidden_sizes": hf.get("hidden_sizes", [32, 64, 160, 256]),
        "depths": hf.get("depths", [2, 2, 2, 2]),
        "num_attention_heads": hf.get("num_attention_heads", list(MIT_HEADS)),
        "sr_ratios": hf.get("sr_ratios", list(MIT_SR_RATIOS)),
        "patch_sizes": hf.get("patch_sizes", [7, 3, 3, 3]),
        "strides": hf.get("strides", [4, 2, 2, 2]),
        "mlp_ratios": hf.get("mlp_ratios", [4] * n),
    }
    bad = {k: v for k, v in lists.items() if len(v) != n}
    if bad:
        raise CheckpointError(f"num_encoder_blocks is {n} but {bad} have other lengths")
    stages = tuple(
        StageConfig(width=w, depth=d, num_heads=h, sr_ratio=r, patch_size=p, stride=s, mlp_ratio=float(m))
        for w, d, h, r, p, s, m in zip(*lists.values())
    )
    if encoder_only:
        num_classes = DEFAULT_NUM_CLASSES
        labels = len(hf["id2label"]) if hf.get("id2label") else hf.get("num_labels")
        notes.append(
            f"encoder-only classification checkpoint ({labels} image classes): the segmentation head gets "
            f"{DEFAULT_NUM_CLASSES} classes (ADE20K's count)"
        )
    else:
        num_classes = len(hf["id2label"]) if hf.get("id2label") else hf.get("num_labels", 2)
    try:
        class_names = names_from_id2label(hf["id2label"]) if hf.get("id2label") and not encoder_only else None
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    decoder = DecoderConfig(
        width=hf.get("decoder_hidden_size", 256), dropout=hf.get("classifier_dropout_prob", 0.1)
    )
    config = ModelConfig(
        stages=stages,
        decoder=decoder,
        num_classes=num_classes,
        in_channels=hf.get("num_channels", 3),
        drop_path_rate=hf.get("drop_path_rate", 0.1),
        class_names=class_names,
        preprocessing=hf.get(HF_PREPROCESSING_KEY),
    )
    if hf.get("model_type") == rope_original.MODEL_TYPE:
        config = rope_original.from_original_config(config, hf)
    return named(config)


def infer_config(state: dict[str, torch.Tensor], notes: list[str]) -> ModelConfig:
    """A ``ModelConfig`` from the shapes of a state dict (our key names).

    Widths and the input channels come from the patch-embedding convolutions, patch
    sizes from their kernels, depths from counting blocks, reduction ratios from the
    ``sr`` kernels (none: 1), MLP ratios from ``dense1``, decoder width from
    ``linear_c.0``, classes from the classifier. Two things no weight stores are
    assumed: strides are 4 for a first stage with patch 7 and 2 otherwise (MiT's
    overlapping patch embeddings), and the heads are MiT's (``MIT_HEADS``). Other head
    counts load into the wrong model silently, so for those build the model yourself:
    ``create_model(config=..., pretrained=path)``.
    """

    def shape(key: str) -> torch.Size:
        if key not in state:
            raise CheckpointError(f"cannot infer the architecture: {key} is not in the checkpoint")
        return state[key].shape

    stages = []
    while f"encoder.patch_embeddings.{len(stages)}.proj.weight" in state:
        i = len(stages)
        embedding = shape(f"encoder.patch_embeddings.{i}.proj.weight")
        if len(embedding) != 4:
            raise CheckpointError(
                f"cannot infer the architecture: encoder.patch_embeddings.{i}.proj.weight has shape "
                f"{tuple(embedding)}, not a convolution's (only SegFormer's overlapping patch embeddings are inferred)"
            )
        width, _, patch, _ = embedding
        depth = len({k.split(".")[3] for k in state if k.startswith(f"encoder.block.{i}.")})
        sr = state.get(f"encoder.block.{i}.0.attention.self.sr.weight")
        hidden = shape(f"encoder.block.{i}.0.mlp.dense1.weight")[0]
        if i >= len(MIT_HEADS) or width % MIT_HEADS[i]:
            raise CheckpointError(
                f"cannot infer the attention heads of stage {i} (width {width}): only MiT's {MIT_HEADS} are "
                "assumed; build the model with create_model(config=..., pretrained=path)"
            )
        stages.append(
            StageConfig(
                width=width,
                depth=depth,
                num_heads=MIT_HEADS[i],
                sr_ratio=1 if sr is None else sr.shape[-1],
                patch_size=patch,
                stride=4 if i == 0 and patch == 7 else 2,
                mlp_ratio=hidden / width,
            )
        )
    if not stages:
        raise CheckpointError(
            "cannot infer the architecture: no encoder.patch_embeddings.0.proj.weight (not SegFormer?)"
        )
    in_channels = shape("encoder.patch_embeddings.0.proj.weight")[1]
    notes.append(f"architecture inferred from the weights; attention heads assumed MiT's {MIT_HEADS[: len(stages)]}")
    if "decode_head.classifier.weight" in state:
        decoder = DecoderConfig(width=shape("decode_head.linear_c.0.proj.weight")[0])
        num_classes = shape("decode_head.classifier.weight")[0]
    else:
        variant = variant_with(tuple(stages), in_channels)
        decoder = variant.decoder if variant is not None else DecoderConfig()
        num_classes = DEFAULT_NUM_CLASSES
        notes.append(
            f"encoder-only checkpoint: the segmentation head gets {num_classes} classes "
            f"and decoder width {decoder.width}"
        )
    return named(ModelConfig(stages=tuple(stages), decoder=decoder, num_classes=num_classes, in_channels=in_channels))


def variant_with(stages: tuple[StageConfig, ...], in_channels: int) -> ModelConfig | None:
    """The registered model whose encoder is exactly ``stages``, if any."""
    for name in list_models():
        config = get_config(name)
        if config.stages == stages and config.in_channels == in_channels:
            return config
    return None


def named(config: ModelConfig) -> ModelConfig:
    """``config`` named after the registered model it equals in architecture, if any."""
    variant = variant_with(config.stages, config.in_channels)
    if variant is not None and variant.decoder.width == config.decoder.width:
        return config.replace(name=variant.name)
    return config
