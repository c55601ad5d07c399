"""Files written whole or not at all (a full disk or a read-only file system named as such), and JSON read and written
the one way the project does.

The bottom of the house: it imports nothing of segformer_lab, so every layer (models,
engine, tools) can use it without an import pointing up.
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any, Callable


# how writers that are not Python's report a full disk: torch.save's zip writer, "[enforce
# fail at inline_container.cc:NNN] . unexpected pos N vs M", for a small file "basic_ios::
# clear: iostream error", or "file write failed"; safetensors, "... (os error 28)"
FULL_DISK_TEXTS = ("unexpected pos", "iostream error", "file write failed", "os error 28")
TEMPORARY = re.compile(r"\..+\.tmp-\d+")  # atomic_write's file before its rename: ".NAME.tmp-PID"


class DiskFullError(OSError):
    """No space left on a file system while writing a file; the file's previous version is kept."""

    def __init__(self, path: Path):
        mount = Path(path).resolve().parent
        while not os.path.ismount(mount):
            mount = mount.parent
        super().__init__(errno.ENOSPC, f"no space left on {mount} while writing {path}; its previous version, "
                                       "if any, is kept: free space there and run again")

    def __str__(self) -> str:
        return self.strerror


def disk_full(error: BaseException) -> bool:
    """Whether ``error`` is a write that failed for want of space (ENOSPC, or torch's or
    safetensors' form of it)."""
    if isinstance(error, OSError):
        return error.errno == errno.ENOSPC
    return any(text in str(error) for text in FULL_DISK_TEXTS)


def read_only(error: BaseException, path: Path) -> bool:
    """Whether writing ``path`` failed with ``error`` because its file system is mounted
    read-only (EROFS; safetensors' "os error 30"; torch's "cannot be opened" on such a mount)."""
    if (isinstance(error, OSError) and error.errno == errno.EROFS) or "(os error 30)" in str(error):
        return True
    try:
        return bool(os.statvfs(Path(path).parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def temporary_path(path: Path) -> Path:
    """Where ``atomic_write`` writes ``path`` before renaming it (``TEMPORARY``)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a file ``atomic_write`` had not renamed yet (what a killed process leaves)."""
    return TEMPORARY.fullmatch(path.name) is not None and path.is_file()


def umask() -> int:
    """The process's umask: read from Linux's ``/proc`` (which leaves it alone), elsewhere set
    and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: Path) -> int:
    """The permissions ``path`` gets: those of the file it replaces, else a new file's under the
    umask (0644 for umask 022), as an in-place write would give it."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~umask()


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``,
    so a reader never sees a half-written file and an interrupted write loses nothing. The
    file gets the user's usual permissions whatever the writer gave its temporary file
    (safetensors writes 0600): ``_mode_for``. A full disk raises ``DiskFullError`` naming
    the file system and ``path``; a read-only file system, ``OSError(EROFS)`` naming
    ``path`` (whatever form the writer's report had)."""
    path = Path(path)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except Exception as error:
        if disk_full(error):
            raise DiskFullError(path) from error
        if read_only(error, path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path)) from error
        raise
    finally:
        if os.path.lexists(tmp):  # not unlink(missing_ok=True): on a read-only file system that fails too
            tmp.unlink()


def read_json(path: Path) -> Any:
    """The JSON value in ``path``, or None when it is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, written atomically (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))
