"""Export to Hugging Face transformers: our keys in the Hub's spelling, the
``SegformerConfig`` of a config that plain SegFormer can express, and ``save_transformers``,
a directory that ``transformers.SegformerForSemanticSegmentation.from_pretrained`` opens
(transformers is not needed to write it)."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from ..._io import atomic_write, write_json
from ...data.preprocessing import DATASET_DEFAULT
from ..config import DecoderConfig, ModelConfig, StageConfig
from ..labels import resolve_class_names, to_id2label
from ..pretrained import CONFIG_NAME, HF_PREPROCESSING_KEY, PREPROCESSOR_NAME, WEIGHTS_NAME
from ..segmentation_model import SegmentationModel
from .formats import HF_PREFIX

HF_MODEL_TYPE = "segformer"
HF_ARCHITECTURE = "SegformerForSemanticSegmentation"

# What a transformers SegformerConfig can say about a stage; every other field must keep
# its plain-SegFormer default (``fold`` changes how, not what, a model computes).
HF_STAGE_FIELDS = ("width", "depth", "num_heads", "sr_ratio", "patch_size", "stride", "mlp_ratio", "fold")


def to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys -> the Hub spelling of ``SegformerForSemanticSegmentation`` (as saved by
    transformers 4 and 5): encoder keys get the ``segformer.`` prefix, the rest is equal."""
    return {(HF_PREFIX + k if k.startswith("encoder.") else k): v for k, v in state_dict.items()}


def transformers_differences(config: ModelConfig) -> list[str]:
    """Where ``config`` departs from plain SegFormer, which transformers' model is (RoPE,
    BoostFormer components, resizers ...): ``["stage 0: mixer='pooled'", ...]``."""
    differences = []
    for i, stage in enumerate(config.stages):
        plain = StageConfig(**{name: getattr(stage, name) for name in HF_STAGE_FIELDS})
        differences += [f"stage {i}: {f.name}={getattr(stage, f.name)!r}" for f in fields(StageConfig)
                        if getattr(stage, f.name) != getattr(plain, f.name)]  # fmt: skip
    decoder = config.decoder
    plain = DecoderConfig(width=decoder.width, dropout=decoder.dropout, dropout_mode=decoder.dropout_mode,
                          fold=decoder.fold)  # fmt: skip
    differences += [f"decoder: {f.name}={getattr(decoder, f.name)!r}" for f in fields(DecoderConfig)
                    if getattr(decoder, f.name) != getattr(plain, f.name)]  # fmt: skip
    if config.input_resizer is not None:
        differences.append(f"input_resizer={config.input_resizer!r}")
    return differences


def hf_labels(config: ModelConfig) -> dict[str, dict]:
    """``id2label`` and ``label2id`` of ``config``'s classes (``resolve_class_names``: its
    own names, else ADE20K's for 150 classes, else ``class k``)."""
    names = resolve_class_names(config.class_names, config.num_classes, config.name)
    return {"id2label": to_id2label(names), "label2id": {name: i for i, name in enumerate(names)}}


def to_hf_config(config: ModelConfig) -> dict[str, Any]:
    """The ``transformers.SegformerConfig`` keyword arguments describing ``config``; a
    ``ValueError`` naming the differences if transformers' SegFormer cannot express it.

    MLP ratios are written as ints where they are whole numbers: transformers 5 validates
    ``mlp_ratios`` as a list of ints."""
    differences = transformers_differences(config)
    if differences:
        raise ValueError(
            f"{config.name} has no transformers equivalent (SegformerForSemanticSegmentation is plain SegFormer): "
            + ", ".join(differences)
        )
    stages = config.stages
    return {
        "num_channels": config.in_channels,
        "num_encoder_blocks": len(stages),
        "depths": [s.depth for s in stages],
        "sr_ratios": [s.sr_ratio for s in stages],
        "hidden_sizes": [s.width for s in stages],
        "patch_sizes": [s.patch_size for s in stages],
        "strides": [s.stride for s in stages],
        "num_attention_heads": [s.num_heads for s in stages],
        "mlp_ratios": [int(s.mlp_ratio) if float(s.mlp_ratio).is_integer() else s.mlp_ratio for s in stages],
        "decoder_hidden_size": config.decoder.width,
        "classifier_dropout_prob": config.decoder.dropout,
        "drop_path_rate": config.drop_path_rate,
        "num_labels": config.num_classes,
        **hf_labels(config),
    }


def save_transformers(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``model`` in transformers' own format: ``config.json`` (``model_type``
    ``"segformer"``, ``id2label``, and our whole preprocessing as
    ``segformer_lab_preprocessing``), ``model.safetensors`` in the Hub's key spelling and ``preprocessor_config.json`` (the model's preprocessing
    as ``SegformerImageProcessor`` says it; a model without one gets ``DATASET_DEFAULT``),
    each atomically, so that ``SegformerForSemanticSegmentation.from_pretrained(directory)``
    computes the same logits, ``pipeline("image-segmentation", model=directory)`` opens it
    (and ``load_model`` reads it back).

    Only a plain SegFormer can be written: a ``SegmentationModel`` whose config
    transformers can express (``to_hf_config``); anything else (RoPE, BoostFormer's
    components, resizers, an ``ImageClassifier``) is a ``ValueError`` saying why."""
    if not isinstance(model, SegmentationModel):
        raise ValueError(
            f"save_transformers writes a SegmentationModel (as {HF_ARCHITECTURE}); got {type(model).__name__}"
        )
    preprocessing = model.config.preprocessing or DATASET_DEFAULT
    config = {
        "architectures": [HF_ARCHITECTURE],
        "model_type": HF_MODEL_TYPE,
        **to_hf_config(model.config),
        **hf_labels(model.config),
        HF_PREPROCESSING_KEY: preprocessing.to_dict(),  # what preprocessor_config.json cannot say (multiple_of, mode)
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in to_hf_state_dict(model.state_dict()).items()}
    atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    write_json(directory / CONFIG_NAME, config)
    write_json(directory / PREPROCESSOR_NAME, preprocessing.to_image_processor())
    return directory
