"""Reading checkpoints of every supported format into ``SegmentationModel``.

(Loading is being written; this module currently holds the export to Hugging Face.)
"""

from __future__ import annotations

from typing import Any

import torch

from .config import ModelConfig

HF_PREFIX = "segformer."


def to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys -> the Hub spelling of ``SegformerForSemanticSegmentation`` (as saved by
    transformers 4 and 5): encoder keys get the ``segformer.`` prefix, the rest is equal."""
    return {(HF_PREFIX + k if k.startswith("encoder.") else k): v for k, v in state_dict.items()}


def to_hf_config(config: ModelConfig) -> dict[str, Any]:
    """The ``transformers.SegformerConfig`` keyword arguments describing ``config``."""
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
        "mlp_ratios": [s.mlp_ratio for s in stages],
        "decoder_hidden_size": config.decoder.width,
        "classifier_dropout_prob": config.decoder.dropout,
        "drop_path_rate": config.drop_path_rate,
        "num_labels": config.num_classes,
    }
