"""Public names of a package imported on first use (PEP 562): ``import segformer_lab`` and
``--help`` do not load torch, and a module that needs the light half of a package (``data``'s
constants, ``engine``'s loss) does not load its heavy half (albumentations, Lightning). Only
the standard library here."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` whose names in ``exports`` (name ->
    submodule, relative to ``package``) are imported when first looked up, then kept."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
