"""What goes wrong in an export: ``ExportError``, and the optional packages an export
needs, named with the extra that installs them when missing."""

from __future__ import annotations

EXPORT_EXTRA_HINT = "pip install 'segformer-lab[export]'"


class ExportError(RuntimeError):
    """An export that failed or that did not pass its check."""


def require_export_packages() -> None:
    """Import onnx, onnxscript and onnxruntime, or say how to install them."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ModuleNotFoundError(f"ONNX export needs {', '.join(missing)}: {EXPORT_EXTRA_HINT}")


def first_line(err: Exception) -> str:
    """The first non-blank line of an error message (at most 500 characters): the
    exporter's and onnx.checker's messages run to pages."""
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    return lines[0][:500] if lines else ""


def described(err: BaseException) -> str:
    """``Type: first line of the message`` (``first_line``), for one-line reports."""
    line = first_line(err)
    return f"{type(err).__name__}: {line}" if line else type(err).__name__
