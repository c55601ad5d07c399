"""``_io``: a full disk is named as such, and the previous file is kept."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from segformer_lab._io import DiskFullError, atomic_write


def _full_disk_os(tmp: Path) -> None:
    tmp.write_bytes(b"half")
    raise OSError(errno.ENOSPC, "No space left on device")


def _full_disk_torch(size: int):
    """torch.save onto a full device; torch's own report is "basic_ios::clear: iostream
    error" for a small file and "[enforce fail at inline_container.cc:672] . unexpected pos
    N vs M" (the issue's) for a larger one."""
    return lambda tmp: torch.save({"w": torch.ones(size)}, "/dev/full")


@pytest.mark.parametrize("write", [_full_disk_os, _full_disk_torch(3), _full_disk_torch(10_000)],
                         ids=["ENOSPC", "torch-small", "torch-large"])
def test_full_disk_is_named_and_the_previous_file_kept(tmp_path, write):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"previous")
    with pytest.raises(DiskFullError) as info:
        atomic_write(path, write)
    message = str(info.value)
    assert message.startswith("no space left on /") and f"while writing {path}" in message
    assert info.value.errno == errno.ENOSPC and "\n" not in message
    assert path.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [path]


def test_other_write_errors_pass_through(tmp_path):
    def broken(tmp: Path) -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        atomic_write(tmp_path / "x", broken)
