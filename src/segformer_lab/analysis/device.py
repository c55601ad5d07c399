"""Where and how a benchmark runs: the device and precision (checked up front), autocast
around each call, ``torch.compile`` with its failures told in one line, the peak memory
of one call, and the environment a result reports.

Peak memory means the same on both devices: the tensors a contender keeps between calls
(weights and buffers; for a training step also gradients and optimiser state) plus the
largest increase over what was allocated just before one call. Several contenders share
one process (they are timed in turns), so each is measured by that increase rather than
by an absolute high-water mark. On CUDA the increase is ``torch.cuda.max_memory_allocated``
after ``reset_peak_memory_stats`` (tensors only, not the allocator's cache); on the CPU it
is the process's peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``
after returning freed heap pages with ``malloc_trim``), so it also counts allocator
overhead. ``ru_maxrss`` is not used: it is a high-water mark that never goes down.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
import sys
from typing import Any, Callable

import torch
from torch import nn

from ..export.errors import described
from ..inference.devices import DeviceError

PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MIB = 2**20
MEMORY_NOTE = (
    "peak memory: the tensors a contender keeps (weights; training: also gradients and AdamW state) plus one "
    "call's peak increase over what was allocated before it ({how})"
)
_HOW = {
    "cuda": "torch.cuda.max_memory_allocated",
    "cpu": "process resident set, high-water mark reset before the call",
}


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a precision the device cannot run, after trying the ops a model needs."""
    if precision not in PRECISIONS:
        raise DeviceError(f"--precision {precision!r} is unknown; choose one of {tuple(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16; use fp16")
    try:  # a convolution, a linear map, a norm and attention: what every model here runs
        with autocast(device, precision):
            x = nn.Conv2d(3, 8, 3).to(device)(torch.randn(1, 3, 8, 8, device=device)).flatten(2).transpose(1, 2)
            x = nn.functional.layer_norm(nn.Linear(8, 8).to(device)(x), (8,))
            nn.functional.scaled_dot_product_attention(x[None], x[None], x[None]).sum().item()
    except RuntimeError as err:
        raise DeviceError(f"--precision {precision} does not run on {device.type} here ({described(err)}); "
                          "use fp32 or bf16") from None  # fmt: skip


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to the precision's dtype (nothing for fp32)."""
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def in_precision(run: Callable[[Any], Any], device: torch.device, precision: str) -> Callable[[Any], Any]:
    """``run`` called under ``autocast(device, precision)``."""

    def call(inputs: Any) -> Any:
        with autocast(device, precision):
            return run(inputs)

    return call


def compiled(module: nn.Module, settings: dict | None) -> nn.Module:
    """``torch.compile(module, **settings)``; ``None`` leaves the module eager. Compilation
    happens at the first call: ``first_calls`` turns its failure into one line."""
    return module if settings is None else torch.compile(module, **settings)


def first_calls(
    runners: dict[str, Callable[[Any], Any]], inputs: Any, compiling: bool, inference: bool = True
) -> tuple[dict[str, Callable[[Any], Any]], dict[str, str]]:
    """Call every runner once, untimed (compilation happens here); return those that ran
    and the failures by name. With ``compiling``, a runner that fails is reported on
    stderr in one line and left out, so the others still run; if the first one (the
    reference of every ratio) fails, the run stops with a ``DeviceError``. Without
    compilation a failure is raised as it is."""
    kept, failed = {}, {}
    with torch.inference_mode() if inference else contextlib.nullcontext():
        for index, (name, run) in enumerate(runners.items()):
            try:
                run(inputs)
            except Exception as err:  # noqa: BLE001 - any compiler failure, reported in one line
                if not compiling:
                    raise
                message = f"--compile failed for {name}: {described(err)}"
                if index == 0:
                    raise DeviceError(f"{message}; run without --compile") from None
                print(f"segformer-lab bench: {message}; left out of the comparison", file=sys.stderr)
                failed[name] = message
                continue
            kept[name] = run
    return kept, failed


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tensor_bytes(*owners: nn.Module | torch.optim.Optimizer | None) -> int:
    """Bytes of the tensors ``owners`` keep between calls: parameters, their gradients and
    buffers of modules; the state of optimisers."""
    tensors: dict[int, torch.Tensor] = {}
    for owner in owners:
        if isinstance(owner, nn.Module):
            for p in owner.parameters():
                tensors[id(p)] = p
                if p.grad is not None:
                    tensors[id(p.grad)] = p.grad
            tensors.update((id(b), b) for b in owner.buffers())
        elif owner is not None:
            for state in owner.state.values():
                tensors.update((id(t), t) for t in state.values() if isinstance(t, torch.Tensor))
    return sum(t.numel() * t.element_size() for t in tensors.values())


def peak_memory_mib(run: Callable[[Any], Any], inputs: Any, device: torch.device, kept_bytes: int,
                    inference: bool = True) -> float | None:  # fmt: skip
    """Peak memory of one call ``run(inputs)`` in MiB, as the module docstring defines it
    (``kept_bytes``: the tensors the runner keeps). ``None`` where the CPU's resident set
    cannot be read or reset (not Linux)."""
    with torch.inference_mode() if inference else contextlib.nullcontext():
        if device.type == "cuda":
            synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            run(inputs)
            synchronize(device)
            increase = torch.cuda.max_memory_allocated(device) - before
        else:
            before = _reset_resident_peak()
            if before is None:
                return None
            run(inputs)
            increase = _resident_kib("VmHWM") * 1024 - before
    return (kept_bytes + max(increase, 0)) / MIB


def memory_note(device: torch.device) -> str:
    return MEMORY_NOTE.format(how=_HOW[device.type])


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _reset_resident_peak() -> int | None:
    """Return freed heap pages to the system, reset the peak resident set to the current
    one, and return it in bytes; ``None`` where that is impossible."""
    libc = ctypes.util.find_library("c")
    if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):
        ctypes.CDLL(libc).malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return _resident_kib("VmRSS") * 1024
    except (OSError, StopIteration):
        return None


def environment(device: torch.device, precision: str, compile_settings: dict | None) -> dict:
    """What a result needs to be compared with another: the device by name, precision,
    compilation, and the versions of torch and CUDA."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return {
        "device": str(device), "device_name": name, "precision": precision, "compile": compile_settings,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
    }  # fmt: skip


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    except OSError:
        model = None
    return f"{model or platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"



# /proc/cpuinfo flags of the instructions that make INT8 matrix products fast on x86
INT8_FLAGS = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "amx_int8": "AMX"}


def int8_support() -> tuple[bool | None, str]:
    """Whether this CPU has VNNI or AMX (``None``: unknown, not Linux/x86), and one line saying
    what that means for INT8 files in onnxruntime."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = set(next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), []))
    except OSError:
        flags = set()
    if not flags:
        return None, "INT8 support of this CPU unknown (no /proc/cpuinfo flags)"
    found = [name for flag, name in INT8_FLAGS.items() if flag in flags]
    if found:
        return True, (f"this CPU has {', '.join(found)}: native INT8 multiply-accumulate, so an INT8 file can run "
                      "faster than float32 (measured below)")
    return False, ("this CPU has no VNNI or AMX (AVX2 INT8: multiply-adds through 16-bit intermediates): expect "
                   "INT8 at most ~1.3x float32, and slower where quantise/dequantise steps dominate")
