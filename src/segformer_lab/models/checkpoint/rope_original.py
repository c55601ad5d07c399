"""The SegFormer-with-RoPE seed's checkpoints (koutyuke/SegFormer-with-RoPE): how its
state dict differs from Hugging Face SegFormer's, and its ``config.json`` as our config.

The seed is transformers' SegFormer with 2-D RoPE in every efficient self-attention;
``save_pretrained`` writes ``config.json`` with ``model_type: "segformer-with-rope"``,
``rope_mixed``, ``rope_theta`` and ``image_size``. Its state dict is Hugging Face's plus:

- axial RoPE: nothing (its tables are not stored), so a bare axial state dict cannot be
  told from plain SegFormer's;
- mixed RoPE: one learnable tensor per stage, ``segformer.encoder.freqs.{i}`` of shape
  ``(2, depth, heads * head_dim / 2)`` (block ``j``'s ``(2, heads, head_dim / 2)``
  frequencies, flattened over heads), where we keep one per block,
  ``encoder.block.{i}.{j}.attention.self.rope.freqs``; and position tables
  ``segformer.encoder.t_x_{i}`` / ``t_y_{i}`` for its fixed ``image_size``.

Its keys are rotated by the average of their window's rotation factors: our
``key_positions="pooled"``; its ``rope_theta`` (default 100) applies to mixed models too.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Sequence

import torch
from torch import nn

from ..config import MIT_HEADS, ModelConfig
from ..pretrained import CheckpointError

log = logging.getLogger("segformer_lab")

NAME = "segformer_with_rope"  # the key format's name in load reports
MODEL_TYPE = "segformer-with-rope"  # its config.json's model_type
DEFAULT_THETA = 100.0  # SegformerWithRoPEConfig's rope_theta
AXIAL_THETA = 100.0  # ours when RopeConfig.theta is None (layers.rope.POS_ENCODINGS)
KEY_POSITIONS = "pooled"
# any of its mixed model's own keys (with or without the model's ``segformer.`` prefix)
SIGNATURE = r"^(segformer\.)?encoder\.(freqs\.\d+|t_[xy]_\d+)$"
IGNORED = (
    (
        r"^(segformer\.)?encoder\.t_[xy]_\d+$",
        "the seed's position tables for its fixed image_size (positions are computed here for each input's size)",
    ),
)
SEED_ROPE_OPTION = f"rope={{'key_positions': '{KEY_POSITIONS}', 'theta': {DEFAULT_THETA:g}}}"
FREQS = r"^encoder\.freqs\.\d+$"  # after Hugging Face's renames
FREQS_REASON = "mixed RoPE frequencies stacked per stage (2, depth, heads*head_dim/2) -> per block (2, heads, head_dim/2)"


def split_frequencies(key: str, freqs: torch.Tensor, heads: Sequence[int]) -> dict[str, torch.Tensor]:
    """A stage's ``(2, depth, heads * head_dim / 2)`` frequencies as one
    ``(2, heads, head_dim / 2)`` tensor per block, under our keys."""
    stage = int(key.rsplit(".", 1)[1])
    if freqs.ndim != 3 or freqs.shape[0] != 2:
        raise CheckpointError(f"{key} has shape {tuple(freqs.shape)}, not the seed's (2, depth, heads*head_dim/2)")
    if stage >= len(heads) or freqs.shape[2] % heads[stage]:
        known = f"{heads[stage]} heads" if stage < len(heads) else "no head count"
        raise CheckpointError(
            f"{key} has shape {tuple(freqs.shape)}: stage {stage} has {known} (MiT's unless config.json says); "
            "load the seed's directory, whose config.json gives num_attention_heads"
        )
    return {
        f"encoder.block.{stage}.{j}.attention.self.rope.freqs": freqs[:, j].reshape(2, heads[stage], -1).clone()
        for j in range(freqs.shape[1])
    }


def transforms(heads: Sequence[int] = MIT_HEADS) -> tuple:
    """The key format's tensor transforms for a model with ``heads`` per stage (a bare
    file: MiT's, as ``architecture.infer_config`` assumes; a directory: its config's)."""
    return ((FREQS, partial(split_frequencies, heads=tuple(heads)), FREQS_REASON),)


def config_heads(hf: dict[str, Any]) -> tuple[int, ...]:
    """The heads per stage a seed ``config.json`` gives (transformers' default: MiT's)."""
    return tuple(hf.get("num_attention_heads", MIT_HEADS))


def with_original_rope(config: ModelConfig, mixed: bool, theta: float = DEFAULT_THETA) -> ModelConfig:
    """``config`` (plain SegFormer) with the seed's RoPE in every stage: axial or mixed,
    its theta, keys at the pooled phasors."""
    rope = {"theta": theta, "key_positions": KEY_POSITIONS}
    return config.with_stages(pos_encoding="mixed" if mixed else "axial").replace(rope=rope)


def from_original_config(config: ModelConfig, hf: dict[str, Any]) -> ModelConfig:
    """The model a seed ``config.json`` describes: ``config`` is what its SegFormer fields
    give; ``rope_mixed`` and ``rope_theta`` add the RoPE, and the decoder drops single
    activations as transformers' port, which the seed trained, does."""
    theta = hf.get("rope_theta", DEFAULT_THETA)
    if not isinstance(theta, (int, float)) or theta <= 1:
        raise CheckpointError(f"config.json: rope_theta must be a number > 1, got {theta!r}")
    seed = with_original_rope(config, bool(hf.get("rope_mixed", False)), float(theta))
    return seed.replace(decoder={"dropout_mode": "element"})


def bare_mixed_note() -> str:
    """What ``load_model`` assumes of a bare mixed state dict."""
    return (
        f"the SegFormer-with-RoPE seed's mixed RoPE (its frequencies are in the checkpoint), keys at its pooled "
        f"phasors; rope_theta {DEFAULT_THETA:g} assumed (it only sets initial frequencies)"
    )


def ambiguous_note(config: ModelConfig) -> str:
    """What a bare Hugging Face state dict cannot say, and the option that picks the seed's axial model."""
    how = (
        f"create_model('{config.name}_rope_axial', {SEED_ROPE_OPTION}, pretrained=path)"
        if config.name != ModelConfig.name
        else f"create_model(config=cfg.with_stages(pos_encoding='axial'), {SEED_ROPE_OPTION}, pretrained=path) "
        "with cfg its SegFormer config"
    )
    return (
        "loaded as plain SegFormer without RoPE: a bare state dict cannot tell it from the SegFormer-with-RoPE "
        f"seed's axial model (same keys); for that one use {how}, or load the seed's directory (its config.json says)"
    )


def check_model(source_config: dict[str, Any] | None, model: nn.Module, where: str) -> None:
    """Loading a seed directory into a model of one's choice: refuse a model without RoPE
    (axial weights would fit it silently); warn where its RoPE is not the seed's."""
    if source_config is None or source_config.get("model_type") != MODEL_TYPE:
        return
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        return
    kind = "mixed" if source_config.get("rope_mixed") else "axial"
    if all(s.pos_encoding == "none" for s in config.stages):
        raise CheckpointError(
            f"{where} is a SegFormer-with-RoPE seed model ({kind} RoPE) and does not load into a model without "
            f"RoPE; use load_model(path), or create_model('<name>_rope_{kind}', {SEED_ROPE_OPTION}, pretrained=path)"
        )
    theta = float(source_config.get("rope_theta", DEFAULT_THETA))
    axial_theta = AXIAL_THETA if config.rope.theta is None else config.rope.theta  # theta shapes axial RoPE only
    if config.rope.key_positions != KEY_POSITIONS or (kind == "axial" and axial_theta != theta):
        log.warning(
            "%s: the model's RoPE (%s) is not the seed's (keys at pooled phasors, theta %g): its outputs will differ "
            "from the seed model's; for the same outputs use load_model(path) or %s",
            where, config.rope, theta, SEED_ROPE_OPTION,
        )
