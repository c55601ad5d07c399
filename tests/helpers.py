"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on the path)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]  # the checkout: configs/, benchmarks/
EXPORTED_CLASSES = ("sky", "road", "car")  # in the metadata of conftest's ``exported_b0``
EXPORTED_PALETTE = ((10, 20, 30), (200, 100, 0), (0, 255, 128))


def shallow(config):
    """The same architecture with one block per stage (two where a stage has deformable
    blocks, the second one deformable): every component type is still present, slow
    checks (export) stay fast."""
    return config.with_stages(
        depth=[2 if s.deformable_blocks else 1 for s in config.stages],
        deformable_blocks=[(1,) if s.deformable_blocks else () for s in config.stages],
    )


@torch.no_grad()
def randomised(model: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Perturb every weight (norms too, which initialise to 1 and 0) by ``scale`` and the
    BatchNorm running statistics, so that any tensor loaded into the wrong place, or
    not used, changes the outputs. Returns ``model`` in the mode it was in."""
    g = torch.Generator().manual_seed(seed)
    for t in model.state_dict().values():
        if t.is_floating_point():
            t.add_(scale * torch.randn(t.shape, generator=g))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(5 * scale * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model


def hub_cache(cache: Path, repo_id: str, files: Path, revision: str = "main", commit: str | None = None) -> Path:
    """The files of the directory ``files`` put into the Hugging Face cache ``cache`` as
    huggingface_hub's ``snapshot_download`` leaves them: ``models--owner--name/`` with
    ``blobs/<etag>`` (git's blob hash for small files, sha256 for weights, as the Hub's
    LFS), ``snapshots/<commit>/<file>`` symlinks to them (relative, ``../../blobs/...``)
    and ``refs/<revision>`` holding the commit. Returns the snapshot directory."""
    owner, name = repo_id.split("/")
    storage = cache / f"models--{owner}--{name}"
    commit = commit or hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (storage / "blobs").mkdir(exist_ok=True)
    for file in sorted(files.iterdir()):
        data = file.read_bytes()
        lfs = file.suffix in (".safetensors", ".bin")
        etag = hashlib.sha256(data).hexdigest() if lfs else hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        blob = storage / "blobs" / etag
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return snapshot
