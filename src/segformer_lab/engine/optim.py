"""The optimiser recipe of SegFormer-style training: AdamW with a faster decoder and no
weight decay on vectors, and a per-iteration learning-rate schedule (linear warmup from
zero, then polynomial decay, SegFormer's, or cosine decay, DeiT's, to a floor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import math

import torch
from torch import nn

HEAD_PREFIX = "decode_head."


@dataclass(frozen=True)
class OptimConfig:
    """``warmup``: iterations (an int) or a fraction of all iterations (a float < 1).
    ``schedule``: ``poly`` (``poly_power`` 1.0 is a linear decay) or ``cosine``; both end
    at ``min_lr_ratio`` × lr."""

    lr: float = 6e-5
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    head_lr_mult: float = 10.0
    warmup: int | float = 1500
    poly_power: float = 1.0
    schedule: str = "poly"
    min_lr_ratio: float = 0.0

    def warmup_iters(self, total: int) -> int:
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, (int, float)):
            raise ValueError(f"warmup must be a number of iterations or a fraction, got {self.warmup!r}")
        if isinstance(self.warmup, float):
            if not 0.0 <= self.warmup < 1.0:
                raise ValueError(f"a fractional warmup must be in [0, 1), got {self.warmup}")
            return round(self.warmup * total)
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0 iterations, got {self.warmup}")
        return self.warmup


def param_groups(model: nn.Module, lr: float, weight_decay: float, head_lr_mult: float = 10.0) -> list[dict]:
    """AdamW groups: encoder / decode head (lr × ``head_lr_mult``), each split into decayed
    parameters and those in ``model.no_weight_decay()`` (biases, norms, RoPE frequencies).
    Empty groups are left out; each group has a ``name`` for logging."""
    no_decay = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    groups: dict[str, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        part = "head" if name.startswith(HEAD_PREFIX) else "encoder"
        decay = name not in no_decay
        key = f"{part}{'' if decay else '_no_decay'}"
        group = groups.setdefault(key, {
            "name": key, "params": [], "lr": lr * (head_lr_mult if part == "head" else 1.0),
            "weight_decay": weight_decay if decay else 0.0,
        })
        group["params"].append(param)
    return list(groups.values())


def build_optimizer(model: nn.Module, config: OptimConfig, fused: bool = True) -> torch.optim.AdamW:
    groups = param_groups(model, config.lr, config.weight_decay, config.head_lr_mult)
    return adamw(groups, fused=fused, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


# devices with a fused AdamW kernel in every PyTorch this project supports
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def adamw(params: Iterable[torch.Tensor] | Iterable[dict], fused: bool = True, **settings) -> torch.optim.AdamW:
    """``torch.optim.AdamW(params, **settings)``, fused (unless ``fused`` is False) where
    every parameter's device has the kernel: one pass over all parameters instead of a
    loop of per-tensor operations (PyTorch's default on the CPU), the same update to float
    rounding. On two CPU cores a step over B0's 205 tensors takes 6 ms fused against
    22 ms, a tenth of a training step at batch 8, 128x128 (benchmarks/optimizer_step.py,
    docs/benchmarks.md)."""
    params = list(params)
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fused = fused and all(p.device.type in FUSED_ADAMW_DEVICES and p.is_floating_point() for p in tensors)
    return torch.optim.AdamW(params, fused=fused or None, **settings)


SCHEDULES = ("poly", "cosine")


class WarmupDecay:
    """LR factor at iteration ``t``: ``t / warmup`` during warmup, then a decay from 1 at
    the end of warmup to ``floor`` at ``total``: ``poly``, ``floor + (1 - floor) * (1 -
    p) ** power``, or ``cosine``, ``floor + (1 - floor) * (1 + cos(pi p)) / 2``, with
    ``p`` the fraction of the decay done."""

    def __init__(self, total: int, warmup: int, kind: str = "poly", power: float = 1.0, floor: float = 0.0) -> None:
        if total < 1 or not 0 <= warmup <= total:
            raise ValueError(f"need total >= 1 and 0 <= warmup <= total, got total {total}, warmup {warmup}")
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1), got {floor}")
        self.total, self.warmup, self.kind, self.power, self.floor = total, warmup, kind, power, floor

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return t / self.warmup
        decay = self.total - self.warmup
        done = min(1.0, (t - self.warmup) / decay) if decay else 1.0
        shape = (1.0 - done) ** self.power if self.kind == "poly" else (1.0 + math.cos(math.pi * done)) / 2
        return self.floor + (1.0 - self.floor) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, config: OptimConfig, total: int
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup + decay over ``total`` optimiser steps (to be stepped once per step)."""
    schedule = WarmupDecay(total, config.warmup_iters(total), config.schedule, config.poly_power, config.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
