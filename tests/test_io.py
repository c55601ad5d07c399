"""``_io``: a full disk is named as such, and the previous file is kept (torch's,
safetensors' and Python's reports of it; a real tmpfs where one can be mounted)."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from segformer_lab._io import DiskFullError, atomic_write, umask


def _refused(error: Exception):
    """A writer that gets half a file out, then the report of a full disk."""
    def write(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise error
    return write


# the reports of a full disk: Python's; torch.save's for a larger and a small file (as it
# gives them on a full tmpfs or /dev/full); safetensors'
REPORTS = {
    "ENOSPC": OSError(errno.ENOSPC, "No space left on device"),
    "torch": RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),
    "torch-small": RuntimeError("basic_ios::clear: iostream error"),
    "safetensors": Exception("Error while serializing: I/O error: No space left on device (os error 28)"),
}


@pytest.mark.parametrize("report", REPORTS)
def test_full_disk_is_named_and_the_previous_file_kept(tmp_path, report):
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"previous")
    with pytest.raises(DiskFullError) as info:
        atomic_write(path, _refused(REPORTS[report]))
    message = str(info.value)
    assert message.startswith("no space left on /") and f"while writing {path}" in message
    assert info.value.errno == errno.ENOSPC and "\n" not in message
    assert path.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [path]


def test_other_write_errors_pass_through(tmp_path):
    with pytest.raises(RuntimeError, match="a bug"):
        atomic_write(tmp_path / "x", _refused(RuntimeError("a bug")))
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and mount; skipped elsewhere)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("writer", ["torch", "safetensors"])
def test_a_real_full_disk(tiny_disk, writer):
    path = tiny_disk / "weights"
    path.write_bytes(b"previous")
    big = {"w": torch.ones(1_000_000)}  # 4 MB
    write = (lambda tmp: torch.save(big, tmp)) if writer == "torch" else (lambda tmp: save_file(big, str(tmp)))
    with pytest.raises(DiskFullError, match=f"^no space left on {tiny_disk} while writing {path};"):
        atomic_write(path, write)
    assert path.read_bytes() == b"previous" and list(tiny_disk.iterdir()) == [path]


@pytest.mark.parametrize("writer", ["safetensors", "text"])
def test_written_files_get_the_umask_or_keep_the_replaced_files_mode(tmp_path, writer):
    """safetensors writes its file 0600: the project's files get the user's umask, like any
    other file, and a file replaced keeps its mode."""
    def write(tmp: Path) -> None:
        if writer == "safetensors":
            save_file({"w": torch.zeros(2)}, str(tmp))
        else:
            tmp.write_text("x")

    previous = os.umask(0o027)
    try:
        atomic_write(tmp_path / "new", write)
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o640
        (tmp_path / "new").chmod(0o604)
        atomic_write(tmp_path / "new", write)
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o604
    finally:
        os.umask(previous)
    assert umask() == previous


# the reports of a read-only file system: Python's (on the temporary file), safetensors'
READ_ONLY = {
    "EROFS": OSError(errno.EROFS, "Read-only file system", "/somewhere/.x.tmp-1"),
    "safetensors": Exception("Error while serializing: I/O error: Read-only file system (os error 30)"),
}


@pytest.mark.parametrize("report", READ_ONLY)
def test_a_read_only_file_system_is_one_error_naming_the_file(tmp_path, report, monkeypatch):
    """One ``OSError(EROFS)`` naming the file the caller asked for, not two chained ones
    (the clean-up of a temporary file that was never made failed too)."""
    path = tmp_path / "model.onnx"

    def refused(tmp: Path) -> None:
        raise READ_ONLY[report]

    real_unlink = Path.unlink

    def unlink(self, missing_ok=False):  # as on a read-only mount: even a missing file cannot be unlinked
        if self.name.startswith(".model.onnx.tmp"):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(OSError) as info:
        atomic_write(path, refused)
    assert info.value.errno == errno.EROFS and info.value.filename == str(path)
    assert info.value.__cause__ is READ_ONLY[report] and info.value.__context__ is READ_ONLY[report]
    assert list(tmp_path.iterdir()) == []
