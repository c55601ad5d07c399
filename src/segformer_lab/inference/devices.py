"""The device a model runs on, parsed and checked before anything is loaded: a name torch
does not know, a CUDA device this machine lacks, or a GPU for an ONNX file (onnxruntime runs
on the CPU here) is one ``DeviceError`` naming the device, not a traceback from ``.to()``."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device, precision or compilation this machine cannot run."""


def resolve_device(name: str | torch.device, onnx: bool = False) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (``mps`` where present) as a ``torch.device``; with
    ``onnx``, only ``cpu``."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device {str(name)!r} is not a device; use cpu, cuda or cuda:N") from None
    if onnx and device.type != "cpu":
        raise DeviceError(f"device {str(name)!r}: ONNX files run in onnxruntime on the CPU here; use --device cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {str(name)!r}: this machine has no CUDA device (torch {torch.__version__}, "
                              f"CUDA build {torch.version.cuda}); use --device cpu")  # fmt: skip
        count = torch.cuda.device_count()
        index = device.index or 0
        if index >= count:
            raise DeviceError(f"device {str(name)!r}: there are {count} CUDA device(s), numbered from 0")
        return torch.device("cuda", index)
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    if device.type != "cpu":
        raise DeviceError(f"device {str(name)!r}: models run on cpu or cuda here")
    return device
