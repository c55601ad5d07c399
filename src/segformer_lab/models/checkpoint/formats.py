"""The key-format table: every spelling of SegFormer's state dict that loads, one entry each.

An entry says how to recognise the spelling (``signature``) and how to turn it into our
key names (``renames``, then ``splits``), which of its keys have no place in our models
(``ignored``) and which of our keys it never holds (``optional``). A new format is one
``KeyFormat`` in ``KEY_FORMATS``; nothing else changes. This project's own spelling needs
no entry to be detected: it is what is left (``OWN_FORMAT``), or what a ``config.json``
or a Lightning checkpoint of ours declares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

from ..config import MIT_HEADS
from ..pretrained import CLASSIFICATION, FORMAT_TAG
from . import boost_original, rope_original

# (pattern, replacement): a ``re.sub`` rule applied to every key
Rename = tuple[str, str | Callable[[re.Match[str]], str]]
# (key fragment, fragments of the parts): a tensor whose key holds the fragment stacks
# its parts along dim 0 (equal sizes); it is replaced by one key per part
Split = tuple[str, tuple[str, ...]]
# (pattern, reason): keys that ``re.search`` finds, and why they are left alone
Explained = tuple[str, str]
# (pattern, function, reason): a key (after renames and splits) that ``re.search`` finds is
# replaced by the entries ``function(key, tensor)`` returns (a reshape, a split into other
# keys, a layout change); the reason goes into the load report
Transform = tuple[str, Callable[[str, torch.Tensor], dict[str, torch.Tensor]], str]

HF_PREFIX = "segformer."  # the Hub's prefix of encoder keys
IMAGENET_HEAD = "the image-classification head of an encoder-only checkpoint"


@dataclass(frozen=True)
class KeyFormat:
    """A spelling of a state dict: ``signature`` (matched against any key) recognises it;
    ``renames`` (in order), ``splits`` and ``transforms`` turn its keys and tensors into
    ours; ``ignored`` are its keys
    that our models have no place for; ``optional`` are our keys it never holds, which
    keep their initialisation when loading it."""

    name: str
    signature: str
    renames: tuple[Rename, ...] = ()
    splits: tuple[Split, ...] = ()
    transforms: tuple[Transform, ...] = ()
    ignored: tuple[Explained, ...] = ()
    optional: tuple[Explained, ...] = ()


def _zero_based(m: re.Match[str]) -> str:
    """``block1.`` -> ``block.0.``: NVlabs numbers stages from 1, we from 0."""
    return f"{m['name']}.{int(m['index']) - 1}."


HF_RENAMES: tuple[Rename, ...] = (
    (rf"^{re.escape(HF_PREFIX)}", ""),
    (r"^decode_head\.linear_projections\.", "decode_head.linear_c."),
)


def rope_original_format(heads: tuple[int, ...] = MIT_HEADS) -> KeyFormat:
    """The SegFormer-with-RoPE seed's spelling (``rope_seed``) for a model with ``heads``
    per stage (its mixed frequencies are stacked over heads)."""
    return KeyFormat(
        name=rope_original.NAME,
        signature=rope_original.SIGNATURE,
        renames=HF_RENAMES,
        transforms=rope_original.transforms(heads),
        ignored=rope_original.IGNORED,
    )


KEY_FORMATS = (  # detection tries them in this order; ours is the fallback
    KeyFormat(
        name="nvlabs",
        signature=(
            r"^(backbone\.)?(patch_embed|block|norm)\d+\."
            r"|^decode_head\.(linear_c\d|linear_pred\.|linear_fuse\.conv\.)"
        ),
        renames=(
            (r"^backbone\.", ""),
            (r"^(?P<name>patch_embed|block|norm|decode_head\.linear_c)(?P<index>\d+)\.", _zero_based),
            (r"^patch_embed\.(\d+)\.proj\.", r"encoder.patch_embeddings.\1.proj."),
            (r"^patch_embed\.(\d+)\.norm\.", r"encoder.patch_embeddings.\1.layer_norm."),
            (r"^block\.", "encoder.block."),
            (r"^norm\.", "encoder.layer_norm."),
            (r"\.norm1\.", ".layer_norm_1."),
            (r"\.norm2\.", ".layer_norm_2."),
            (r"\.attn\.q\.", ".attention.self.query."),
            (r"\.attn\.kv\.", ".attention.self.kv."),
            (r"\.attn\.sr\.", ".attention.self.sr."),
            (r"\.attn\.norm\.", ".attention.self.layer_norm."),
            (r"\.attn\.proj\.", ".attention.output.dense."),
            (r"\.mlp\.fc1\.", ".mlp.dense1."),
            (r"\.mlp\.fc2\.", ".mlp.dense2."),
            (r"^decode_head\.linear_fuse\.conv\.", "decode_head.linear_fuse."),
            (r"^decode_head\.linear_fuse\.bn\.", "decode_head.batch_norm."),
            (r"^decode_head\.linear_pred\.", "decode_head.classifier."),
        ),
        # one Linear computes key and value: the key's output channels, then the value's
        splits=((".attention.self.kv.", (".attention.self.key.", ".attention.self.value.")),),
        ignored=(
            (r"^(backbone\.)?head\.", IMAGENET_HEAD),
            (r"^decode_head\.conv_seg\.", "mmseg's default classifier, which SegFormer's head never uses"),
            (r"^auxiliary_head\.", "an auxiliary head (a training-time loss branch)"),
        ),
    ),
    KeyFormat(
        name="transformers5",
        signature=r"^(segformer\.)?stages\.\d+\.",
        renames=HF_RENAMES
        + (
            (r"^stages\.(\d+)\.patch_embeddings\.", r"encoder.patch_embeddings.\1."),
            (r"^stages\.(\d+)\.blocks\.", r"encoder.block.\1."),
            (r"^stages\.(\d+)\.layer_norm\.", r"encoder.layer_norm.\1."),
            (r"\.layernorm_before\.", ".layer_norm_1."),
            (r"\.layernorm_after\.", ".layer_norm_2."),
            (r"\.attention\.q_proj\.", ".attention.self.query."),
            (r"\.attention\.k_proj\.", ".attention.self.key."),
            (r"\.attention\.v_proj\.", ".attention.self.value."),
            (r"\.attention\.o_proj\.", ".attention.output.dense."),
            (r"\.attention\.sequence_reduction\.sequence_reduction\.", ".attention.self.sr."),
            (r"\.attention\.sequence_reduction\.layer_norm\.", ".attention.self.layer_norm."),
            (r"\.mlp\.fc1\.", ".mlp.dense1."),
            (r"\.mlp\.fc2\.", ".mlp.dense2."),
        ),
        ignored=((r"^classifier\.", IMAGENET_HEAD),),
    ),
    # before Hugging Face's: the BoostFormer seed's keys carry its prefix
    KeyFormat(
        name=boost_original.FORMAT_NAME,
        signature=boost_original.SIGNATURE,
        renames=boost_original.RENAMES,
        transforms=boost_original.TRANSFORMS,
        ignored=boost_original.IGNORED + ((r"^classifier\.", IMAGENET_HEAD),),
    ),
    rope_original_format(),  # its mixed models' keys; before Hugging Face's, whose keys it also has
    KeyFormat(
        name="huggingface",
        signature=r"^segformer\.encoder\.|^decode_head\.linear_projections\.",
        renames=HF_RENAMES,
        ignored=((r"^classifier\.", IMAGENET_HEAD),),
    ),
    # an ImageClassifier of ours: our encoder keys beside a top-level classifier (ours
    # never has one; the formats above carry a prefix or other names)
    KeyFormat(
        name=f"{FORMAT_TAG}_{CLASSIFICATION}",
        signature=r"^classifier\.",
        ignored=((r"^classifier\.", IMAGENET_HEAD),),
    ),
)
OWN_FORMAT = KeyFormat(name=FORMAT_TAG, signature="")
OWN_CLASSIFIER_FORMAT = KEY_FORMATS[-1]
