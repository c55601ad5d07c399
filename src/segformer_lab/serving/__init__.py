"""Serving: a model behind HTTP (``segformer-lab serve``).

Sits above ``inference`` (it serves a ``Segmenter`` or ``OnnxSegmenter``) and below
``tools``. Modules: ``options`` (``ServeOptions``, the deployer's bounds; light),
``requests`` (the checks a request passes before it may queue: body size, image header,
payload forms, the answer asked for), ``batcher`` (the bounded queue and batches),
``responses`` (Hugging Face's segments, label PNG, overlay, the page's maps),
``metrics`` (Prometheus), ``app`` (the FastAPI app, ``create_app``), ``server``
(``serve``: uvicorn with a graceful stop), ``page.html`` (the page at ``GET /``).

The public names are imported on first use (PEP 562), as in ``segformer_lab``, so that
the command's ``--help`` does not load torch or FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

from .options import ServeOptions

_EXPORTS = {"create_app": "app", "serve": "server"}

__all__ = ["ServeOptions", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
