"""Sharing models the Hugging Face Hub way: a model card, ``push_to_hub(model, repo_id)``
and ``download``.

The layout follows ``huggingface_hub.ModelHubMixin``: a repository (or directory) holds
``config.json``, ``model.safetensors`` and a ``README.md`` model card whose YAML header
carries the Hub metadata (``library_name``, ``pipeline_tag``, ``tags``, ``license``,
``datasets``, and a ``model-index`` with the metrics when known). ``config.json`` is this
project's (``"format": "segformer_lab"``), so ``load_model`` reads such a directory or a
downloaded snapshot of such a repository as it is.

huggingface_hub is optional (``pip install 'segformer-lab[hub]'``) and imported only by
``push_to_hub`` and ``download``. This module knows neither the model classes (it takes
any model with a ``config`` and ``save_pretrained``) nor the profiler above it: the card
shows MACs when given a profile (``segformer_lab.tools.profile.profile_model``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn

from .._io import atomic_write
from .parameters import parameter_counts

CARD_NAME = "README.md"
LIBRARY_NAME = "segformer-lab"
HUB_EXTRA_HINT = "pip install 'segformer-lab[hub]'"
MAX_LISTED_CLASSES = 256


def _hub():
    try:
        import huggingface_hub
    except ImportError as err:
        raise ModuleNotFoundError(f"sharing on the Hugging Face Hub needs huggingface_hub: {HUB_EXTRA_HINT}") from err
    return huggingface_hub


def _yaml_value(value: Any) -> str:
    """A YAML scalar: JSON's quoting is valid YAML."""
    return json.dumps(value)


def model_card(
    model: nn.Module,
    repo_id: str | None = None,
    profile: Any = None,
    metrics: Mapping[str, float] | None = None,
    dataset: str | None = None,
    license: str | None = None,
    class_names: Sequence[str] | None = None,
    tags: Sequence[str] = (),
    description: str | None = None,
) -> str:
    """The ``README.md`` text of a model card for ``model`` (a ``SegmentationModel``).

    ``profile``: a ``segformer_lab.tools.profile.Profile`` (its GMACs go in the card);
    ``metrics``: name -> value, e.g. ``{"mIoU": 37.4, "aAcc": 76.2}`` (percent), shown in a
    table and, with ``dataset``, in the ``model-index`` metadata; ``class_names`` (default:
    the model's own, when it knows them) are listed.
    """
    config = model.config
    class_names = class_names if class_names is not None else config.class_names
    params = parameter_counts(model)
    title = repo_id or config.name
    all_tags = ["semantic-segmentation", "segformer", LIBRARY_NAME, "model_hub_mixin", "pytorch_model_hub_mixin"]
    all_tags += [t for t in (config.name, *tags) if t and t not in all_tags]

    header = ["---", f"library_name: {LIBRARY_NAME}", "pipeline_tag: image-segmentation"]
    if license:
        header.append(f"license: {_yaml_value(license)}")
    header.append("tags:")
    header += [f"- {_yaml_value(t)}" for t in all_tags]
    if dataset:
        header += ["datasets:", f"- {_yaml_value(dataset)}"]
    if metrics and dataset:
        header += [
            "model-index:",
            f"- name: {_yaml_value(title)}",
            "  results:",
            "  - task:",
            "      type: image-segmentation",
            "      name: Semantic Segmentation",
            "    dataset:",
            f"      name: {_yaml_value(dataset)}",
            f"      type: {_yaml_value(dataset)}",
            "    metrics:",
        ]
        for name, value in metrics.items():
            header += [f"    - type: {_yaml_value(name)}", f"      value: {float(value)}",
                       f"      name: {_yaml_value(name)}"]  # fmt: skip
    header.append("---")

    stages = config.stages
    mixers = sorted({s.mixer for s in stages})
    lines = [
        "",
        f"# {title}",
        "",
        description
        or f"Semantic segmentation model `{config.name}` ({_family(config)}), saved with "
        "segformer-lab in the Hugging Face Hub layout.",
        "",
        "## Architecture",
        "",
        "| | |",
        "| --- | --- |",
        f"| architecture | `{config.name}` |",
        f"| encoder widths | {' '.join(str(s.width) for s in stages)} |",
        f"| encoder depths | {' '.join(str(s.depth) for s in stages)} |",
        f"| attention heads | {' '.join(str(s.num_heads) for s in stages)} |",
        f"| token mixer | {', '.join(mixers)} |",
        f"| FFN | {', '.join(sorted({s.ffn for s in stages}))} |",
        f"| position encoding | {', '.join(sorted({s.pos_encoding for s in stages}))} |",
        f"| decoder | {config.decoder.type}, width {config.decoder.width} |",
        f"| classes | {config.num_classes} |",
        f"| parameters | {params['total']:,} (encoder {params.get('encoder', 0):,}, "
        f"decode head {params.get('decode_head', 0):,}) |",
    ]
    if profile is not None:
        h, w = profile.size
        lines.append(
            f"| GMACs at {h}x{w} | {profile.executed.total / 1e9:.2f} as executed, "
            f"{profile.published.total / 1e9:.2f} as published (FLOPs = 2 x MACs; "
            "`torch.utils.flop_counter`, attention included) |"
        )
    lines += ["", "Input: `pixel_values [B, 3, H, W]` (ImageNet mean/std normalised, H, W >= 32); output: logits "
              "`[B, K, ceil(H/4), ceil(W/4)]`, to be upsampled to the image size.", ""]  # fmt: skip
    if metrics:
        lines += [f"## Evaluation{' on ' + dataset if dataset else ''}", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {float(value):.2f} |" for name, value in metrics.items()]
        lines.append("")
    lines += [
        "## Usage",
        "",
        "```python",
        "import segformer_lab as sl",
        "from huggingface_hub import snapshot_download",
        "",
        f'model = sl.load_model(snapshot_download("{repo_id or "<repo_id>"}"))   # or a local copy of this directory',
        "segmenter = sl.Segmenter(model)",
        'labels = segmenter.predict("image.jpg")   # int64 [H, W]',
        "```",
        "",
        "Files: `config.json` (the architecture, `segformer_lab` format), `model.safetensors` (the weights).",
        "",
    ]
    if class_names and len(class_names) <= MAX_LISTED_CLASSES:
        lines += ["<details><summary>Classes</summary>", ""]
        lines += [f"{i}. {name}" for i, name in enumerate(class_names)]
        lines += ["", "</details>", ""]
    return "\n".join(header + lines)


def _family(config) -> str:
    name = config.name.lower()
    if name.startswith("boostformer"):
        return "BoostFormer"
    if name.startswith("segformer"):
        return "SegFormer"
    return "a SegFormer-family configuration"


def write_model_card(model: nn.Module, directory: str | os.PathLike, overwrite: bool = False, **card: Any) -> Path:
    """Write ``README.md`` into ``directory`` (atomically), unless one exists and not
    ``overwrite`` (as ``ModelHubMixin``: a card edited by hand is kept)."""
    path = Path(directory) / CARD_NAME
    if path.exists() and not overwrite:
        return path
    text = model_card(model, **card)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    commit_message: str = "Push model using segformer-lab",
    private: bool | None = None,
    token: str | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
    model_card_kwargs: Mapping[str, Any] | None = None,
):
    """Upload ``config.json``, ``model.safetensors`` and a generated ``README.md`` to the
    Hub repository ``repo_id`` (created if missing), as ``ModelHubMixin.push_to_hub``
    does; returns huggingface_hub's ``CommitInfo``. Needs the network and a token
    (``token`` or ``huggingface-cli login``)."""
    hub = _hub()
    api = hub.HfApi(token=token)
    repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    card = {"repo_id": repo_id, **(model_card_kwargs or {})}
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(directory)
        write_model_card(model, directory, **card)
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=directory,
            commit_message=commit_message,
            revision=branch,
            create_pr=create_pr,
        )


def download(repo_id: str, revision: str | None = None, token: str | None = None) -> Path:
    """A local snapshot of a Hub repository (``huggingface_hub.snapshot_download``), for
    ``load_model``. Needs the network unless cached."""
    hub = _hub()
    return Path(hub.snapshot_download(repo_id=repo_id, revision=revision, token=token))
