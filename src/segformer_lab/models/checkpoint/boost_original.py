"""The BoostFormer seed's checkpoints: its key spelling and its config, in our terms.

The seed (boostcampaitech4lv23cv3/final-project-level3-cv-16, ``boostformer/``) is a
modified copy of transformers' SegFormer: ``save_pretrained`` writes a ``config.json``
with ``model_type: "segformer"`` and the training scripts ``torch.save`` its state dict.
Its model is our ``boostformer`` layout (PoolFormer blocks in the first two stages,
pooled-KV attention after them, weighted-sum decoder) under other names:

- 1x1 convolutions where we keep Linear weights: the patch embeddings' ``conv`` and the
  Mix-CFN's ``conv1``/``conv2`` (``conv_1``/``conv_2`` in the attention stages);
- ``layer_scale_k`` tensors (our ``layer_scale_k.gamma``), ``norm_k`` for the PoolFormer
  blocks' BatchNorms and the Mix-CFN's, ``attention.self.norm``, ``dwconv.mixconv.conv_3``
  / ``conv_5``;
- ``decode_head.weights`` of shape (stages, 1), our ``stage_weights`` (stages,);
- ``decode_head.linear_fuse``: built by the seed's decode head, never called.

``formats.KEY_FORMATS`` holds the entry made of the pieces below; ``architecture`` builds
the model from ``original_settings`` and ``as_boostformer``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..config import DEFAULT_NUM_CLASSES, MIT_HEADS, ModelConfig
from ..pretrained import CheckpointError
from ..registry import get_config

FORMAT_NAME = "boostformer_seed"
# Keys no other format has: the pooling patch embeddings' convolution, MixConv's halves,
# the decoder's stage weights.
SIGNATURE = r"(^|\.)patch_embeddings\.\d+\.conv\.|\.dwconv\.mixconv\.conv_[35]\.|^decode_head\.weights$"
RENAMES = (
    (r"^segformer\.", ""),
    (r"\.patch_embeddings\.(\d+)\.conv\.", r".patch_embeddings.\1.proj."),
    (r"\.mlp\.conv_?([12])\.", r".mlp.dense\1."),
    (r"\.mlp\.norm_([12])\.", r".mlp.norm\1."),
    (r"\.mlp\.dwconv\.mixconv\.conv_([35])\.", r".mlp.mixconv.conv\1."),
    (r"(\.block\.\d+\.\d+)\.norm_([12])\.", r"\1.layer_norm_\2."),
    (r"\.layer_scale_([12])$", r".layer_scale_\1.gamma"),
    (r"\.attention\.self\.norm\.", ".attention.self.layer_norm."),
    (r"^decode_head\.weights$", "decode_head.stage_weights"),
)
LINEAR_FROM_CONV = r"\.(patch_embeddings\.\d+\.proj|mlp\.dense[12])\.weight$"
IGNORED = (
    (r"^decode_head\.linear_fuse\.", "the seed's decode head builds linear_fuse but its forward never calls it"),
)
# The seed's SegformerConfig defaults where they differ from transformers' (B2, not
# B0): what a config.json without these entries means.
SEED_DEFAULTS = {"depths": [3, 4, 6, 3], "hidden_sizes": [64, 128, 320, 512], "decoder_hidden_size": 768}
POOLFORMER_STAGES = 2  # the seed builds PoolFormer blocks in stages 0-1, attention after


def linear_from_conv(key: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """A 1x1 convolution's weight (out, in, 1, 1) as a Linear's (out, in); any other
    shape is left as it is, for the comparison with the model to name."""
    if weight.dim() == 4 and weight.shape[2:] == (1, 1):
        return {key: weight.flatten(1)}
    return {key: weight}


def stage_weights(key: str, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """The decoder's per-stage scalars, (stages, 1) -> (stages,)."""
    if weights.dim() == 2 and weights.shape[1] == 1:
        return {key: weights.flatten()}
    return {key: weights}


TRANSFORMS = (
    (LINEAR_FROM_CONV, linear_from_conv, "the seed's 1x1 convolutions are Linear layers here"),
    (r"^decode_head\.stage_weights$", stage_weights, "the seed's decode_head.weights (stages, 1) is one vector"),
)


def original_settings(config: dict[str, Any] | None, state: dict[str, torch.Tensor], notes: list[str]) -> dict[str, Any]:
    """The seed's ``SegformerConfig`` entries for a checkpoint: its ``config.json`` (the
    seed's defaults for what it leaves out) or, for a bare state dict (our key names),
    what the weights say. The weights do not hold the attention heads, the pooling
    patch sizes and the strides: the seed's defaults (MiT's) are assumed, with a note."""
    if config is not None:
        return {**SEED_DEFAULTS, **config}

    def shape(key: str) -> torch.Size:
        if key not in state:
            raise CheckpointError(f"cannot infer the architecture: {key} is not in the checkpoint")
        return state[key].shape

    widths, depths, ratios = [], [], []
    while f"encoder.patch_embeddings.{len(widths)}.proj.weight" in state:
        i = len(widths)
        widths.append(shape(f"encoder.patch_embeddings.{i}.proj.weight")[0])
        depths.append(len({k.split(".")[3] for k in state if k.startswith(f"encoder.block.{i}.")}))
        ratios.append(shape(f"encoder.block.{i}.0.mlp.dense1.weight")[0] / widths[-1])
    n = len(widths)
    settings: dict[str, Any] = {
        "num_encoder_blocks": n,
        "hidden_sizes": widths,
        "depths": depths,
        "mlp_ratios": ratios,
        "num_channels": shape("encoder.patch_embeddings.0.proj.weight")[1],
        "num_attention_heads": list(MIT_HEADS[:n]),
        "patch_sizes": [7] + [3] * (n - 1),
        "strides": [4] + [2] * (n - 1),
    }
    if "decode_head.linear_c.0.proj.weight" in state:
        settings["decoder_hidden_size"] = shape("decode_head.linear_c.0.proj.weight")[0]
        settings["num_labels"] = shape("decode_head.classifier.weight")[0]
    else:
        settings["num_labels"] = DEFAULT_NUM_CLASSES
        notes.append(
            f"encoder-only checkpoint: the segmentation head gets {DEFAULT_NUM_CLASSES} classes and the seed's "
            f"decoder width {SEED_DEFAULTS['decoder_hidden_size']}"
        )
    notes.append(
        f"architecture inferred from the weights; not stored in them, the seed's defaults are assumed: attention "
        f"heads {settings['num_attention_heads']}, patch sizes {settings['patch_sizes']}, strides "
        f"{settings['strides']} (for others load the seed's directory, whose config.json says, or build the "
        "model: create_model(config=..., pretrained=path))"
    )
    return {**SEED_DEFAULTS, **settings}


def as_boostformer(config: ModelConfig) -> ModelConfig:
    """A SegFormer-shaped config (stage sizes, heads, decoder width, classes) as the
    seed's model: our ``boostformer`` blocks (PoolFormer in stages 0-1, pooled-KV
    attention after), its weighted-sum decoder with the seed's element-wise dropout."""
    template = get_config("boostformer_b2")
    poolformer, attention = template.stages[0], template.stages[-1]
    sizes = ("width", "depth", "num_heads", "sr_ratio", "patch_size", "stride", "mlp_ratio")
    stages = [
        dataclasses.replace(
            poolformer if i < POOLFORMER_STAGES else attention, **{name: getattr(stage, name) for name in sizes}
        )
        for i, stage in enumerate(config.stages)
    ]
    decoder = {"type": template.decoder.type, "dropout_mode": "element"}
    return config.replace(stages=stages, decoder=decoder, name="custom")
