"""Sharing models the Hugging Face Hub way: a model card, ``push_to_hub(model, repo_id)``,
and the other way round, Hub model ids (``owner/name``, ``owner/name@revision``) resolved
to a local snapshot wherever a checkpoint is accepted (``resolve_checkpoint``).

The layout follows ``huggingface_hub.ModelHubMixin``: a repository (or directory) holds
``config.json``, ``model.safetensors`` and a ``README.md`` model card whose YAML header
carries the Hub metadata (``library_name``, ``pipeline_tag``, ``tags``, ``license``,
``datasets``, and a ``model-index`` with the metrics when known). ``config.json`` is this
project's (``"format": "segformer_lab"``), so ``load_model`` reads such a directory or a
downloaded snapshot of such a repository as it is, as it reads transformers' own.

Resolution goes through huggingface_hub's cache (``snapshot_download``, only
``config.json``, the weights and, when the repository has one, transformers'
``preprocessor_config.json``: how the model takes images): a cached snapshot loads without network, and
``HF_HUB_OFFLINE``, ``HF_HUB_CACHE`` and ``HF_HOME`` mean what huggingface_hub says they
mean. A local path always wins over a Hub id of the same spelling.

huggingface_hub is optional (``pip install 'segformer-lab[hub]'``) and imported only by
the functions that talk to the Hub. This module knows neither the model classes (it
takes any model with a ``config`` and ``save_pretrained``) nor the profiler above it: the
card shows MACs when given a profile (``segformer_lab.analysis.profiling.profile_model``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn

from .._io import atomic_write
from .parameters import parameter_counts
from .pretrained import CONFIG_NAME, PREPROCESSOR_NAME, WEIGHTS_NAME, CheckpointError

CARD_NAME = "README.md"
LIBRARY_NAME = "segformer-lab"
HUB_EXTRA_HINT = "pip install 'segformer-lab[hub]'"
MAX_LISTED_CLASSES = 256
# The weights files of a Hugging Face directory, in order of preference (the Hub's older
# transformers repositories hold only the second); a snapshot fetches config.json and one.
HF_WEIGHTS_NAMES = (WEIGHTS_NAME, "pytorch_model.bin")
# ``owner/name`` or ``owner/name@revision`` (a branch, tag or commit; branches may hold
# slashes, ``refs/pr/1``): the Hub's repository names, one slash, no leading dot or dash.
HUB_ID = re.compile(r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w.-]+(?:/[\w.-]+)*))?")

log = logging.getLogger("segformer_lab")


class HubError(CheckpointError, FileNotFoundError):
    """A Hub id whose snapshot is neither cached nor downloadable (or has no weights)."""


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

    ``profile``: a ``segformer_lab.analysis.profiling.Profile`` (its GMACs go in the card);
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
        "",
        f'model = sl.load_model("{repo_id or "<repo_id>"}")   # or a local copy of this directory',
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


def parse_hub_id(source: Any) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` if ``source`` is a string spelled as a Hub model id
    (``owner/name`` or ``owner/name@revision``), else None. A ``Path`` is never a Hub id."""
    if not isinstance(source, str):
        return None
    match = HUB_ID.fullmatch(source)
    return None if match is None else (match["repo"], match["revision"])


def resolve_checkpoint(source: str | os.PathLike) -> Path:
    """The local path of a checkpoint given as a path or a Hub id.

    An existing path is returned as it is (a local path wins over a Hub id of the same
    spelling, and so does a symbolic link whose target is missing: that is a broken path,
    not a Hub id); a Hub id becomes the directory of its snapshot in huggingface_hub's cache
    (``download``); anything else is returned as a path, for the caller's "no checkpoint"."""
    path = Path(source)
    if path.is_symlink() and not path.exists():
        raise CheckpointError(f"{source} is a broken symbolic link: its target {os.readlink(path)} does not exist "
                              "(fix or remove the link; a Hub id of the same spelling is not read instead)")
    hub_id = None if path.exists() else parse_hub_id(source)
    if hub_id is None:
        return path
    snapshot = download(*hub_id, source=str(source))
    log.info("%s: Hugging Face Hub snapshot %s", source, snapshot)
    return snapshot


def download(repo_id: str, revision: str | None = None, token: str | None = None, source: str | None = None) -> Path:
    """A local snapshot of the Hub model ``repo_id`` holding ``config.json``, its
    weights (``model.safetensors``, else ``pytorch_model.bin``) and its
    ``preprocessor_config.json`` if it has one (nothing else is fetched),
    through huggingface_hub's cache: a cached snapshot needs no network, ``HF_HUB_OFFLINE``
    forbids it. A ``HubError`` (``source``: the id as the user wrote it) says what was
    tried and how to fetch the files by hand."""
    source = source or (repo_id if revision is None else f"{repo_id}@{revision}")
    try:
        hub = _hub()
    except ModuleNotFoundError:
        raise HubError(
            f"{source}: no such file or directory, and reading it as a Hugging Face Hub model id needs "
            f"huggingface_hub: {HUB_EXTRA_HINT}"
        ) from None
    incomplete = getattr(hub.errors, "IncompleteSnapshotError", ())  # huggingface_hub >= 1.x
    wanted, partial = revision, None
    for weights in HF_WEIGHTS_NAMES:
        try:
            snapshot = Path(hub.snapshot_download(repo_id=repo_id, revision=wanted, token=token,
                                                  allow_patterns=[CONFIG_NAME, PREPROCESSOR_NAME, weights]))
        except incomplete as err:
            partial = err  # cached, offline, without this weights file: try the next one
            continue
        except Exception as err:  # noqa: BLE001 - offline, not found, network: one line for each, below
            raise HubError(_fetch_failure(hub, source, repo_id, revision, err)) from err
        if (snapshot / weights).is_file():
            _check_links(snapshot, source)
            return snapshot
        _check_links(snapshot, source)  # a weights link to a missing blob is a damaged cache, not a missing file
        wanted = snapshot.name  # the commit just resolved: the next file comes from the same snapshot
    if partial is not None:
        raise HubError(_fetch_failure(hub, source, repo_id, revision, partial)) from partial
    raise HubError(
        f"{source}: the Hugging Face Hub model has neither {' nor '.join(HF_WEIGHTS_NAMES)} at revision "
        f"{revision or 'main'} (sharded or TensorFlow-only repositories are not read)"
    )


def _check_links(snapshot: Path, source: str) -> None:
    """A cached snapshot whose file links to a blob that is gone (an interrupted clean-up, a
    partly copied cache) is a ``HubError`` saying so, with how to fetch it again."""
    broken = sorted(p.name for p in snapshot.iterdir() if p.is_symlink() and not p.exists())
    if broken:
        storage = snapshot.parent.parent
        raise HubError(f"{source}: the Hugging Face cache is damaged: {', '.join(broken)} in {snapshot} link(s) to "
                       f"missing blobs; delete {storage} and fetch the model again")


def _fetch_failure(hub, source: str, repo_id: str, revision: str | None, err: Exception) -> str:
    """What was tried, why it failed, and how to fetch the files by hand: one line."""
    offline = hub.constants.HF_HUB_OFFLINE
    reason = " ".join(str(err).split()) or type(err).__name__
    where = f"the Hugging Face cache {hub.constants.HF_HUB_CACHE} (HF_HUB_CACHE)"
    tried = f"{where}, without network (HF_HUB_OFFLINE is set)" if offline else f"the Hub, then {where}"
    at = f" --revision {revision}" if revision else ""
    python = f"snapshot_download({repo_id!r}{f', revision={revision!r}' if revision else ''})"
    return (
        f"{source}: no such file or directory, and as a Hugging Face Hub model id it could not be fetched "
        f"(tried {tried}; {type(err).__name__}: {reason[:300]}). Fetch it where there is network: "
        f"'hf download {repo_id}{at} --local-dir DIR' and pass DIR, or fill the cache with "
        f"python -c \"from huggingface_hub import snapshot_download; {python}\" and pass {source} again"
    )
