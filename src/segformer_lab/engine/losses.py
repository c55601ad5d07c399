"""Cross-entropy on logits upsampled to the label size, without the upsampled tensor.

SegFormer predicts at stride 4 and is trained on labels at full resolution: the loss of
the published recipe is ``cross_entropy(interpolate(logits, label size), labels)``. At
512² with 150 classes the upsampled logits are 39M floats per image, and autograd keeps
them, their log-softmax and gradients of the same size: on a CPU that memory traffic is
about half of a SegFormer-B0 training step, on a GPU several GB at batch 16.

``upsampled_cross_entropy`` computes the same value and gradient a band of label rows at
a time, channels last: a band's logits are interpolated (each row and column blended
from its two source rows and columns, with PyTorch's weights), reduced to the
log-sum-exp and the label's logit, and the gradient ``softmax - onehot`` is sent back
through the same blends in the same pass and kept at the logits' size. It never holds
more than a band of upsampled logits.
"""

from __future__ import annotations

import torch

from ..data import IGNORE_INDEX

BAND_ELEMENTS = 1 << 20  # upsampled logits per band: a few MB, so a band's passes stay in cache


def bilinear_sources(out_size: int, in_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear resizing (``align_corners=False``) of ``in_size`` samples to ``out_size``:
    each output's two source indices and the weight of the second, as PyTorch computes
    them (source ``(i + 0.5) * in/out - 0.5``, clamped at 0; no antialiasing)."""
    src = (torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * (in_size / out_size) - 0.5
    src = src.clamp_(min=0)
    first = src.floor().long().clamp_(max=in_size - 1)
    second = (first + 1).clamp_(max=in_size - 1)
    return first, second, (src - first).float()


class AxisResize:
    """Bilinear resizing along one axis, ``in_size -> out_size``, applied to a range of
    output indices (``resize``) and transposed (``accumulate``: the gradient of a range
    added into the input's).

    An integer factor ``s`` (SegFormer's stride 4 at the label size) has ``s`` phases with
    fixed weights reading shifted slices of the input padded by one edge sample (the
    clamping), so both directions are a few strided passes without index gathers; any
    other ratio gathers its two sources per output. ``prepare`` the input once (pads in
    the integer case); accumulate into ``zeros(accumulator_shape)``, then ``finish``.
    """

    def __init__(self, in_size: int, out_size: int, dim: int, device: torch.device) -> None:
        self.in_size, self.dim = in_size, dim
        self.factor = out_size // in_size if out_size % in_size == 0 else 0
        if self.factor:
            offsets = [(p + 0.5) / self.factor - 0.5 for p in range(self.factor)]
            # (first source in padded coordinates relative to the cell, weight of the second)
            self.phases = [(0, 1 + o) if o < 0 else (1, o) for o in offsets]
        else:
            self.first, self.second, self.weight = bilinear_sources(out_size, in_size, device)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if not self.factor:
            return x
        n = x.shape[self.dim]
        return torch.cat([x.narrow(self.dim, 0, 1), x, x.narrow(self.dim, n - 1, 1)], self.dim)

    def accumulator_shape(self, shape: torch.Size) -> list[int]:
        shape = list(shape)
        shape[self.dim] = self.in_size + (2 if self.factor else 0)
        return shape

    def finish(self, acc: torch.Tensor) -> torch.Tensor:
        """The input's gradient from an accumulator: edge padding folded back in."""
        if not self.factor:
            return acc
        core = acc.narrow(self.dim, 1, self.in_size)
        core.narrow(self.dim, 0, 1).add_(acc.narrow(self.dim, 0, 1))
        core.narrow(self.dim, self.in_size - 1, 1).add_(acc.narrow(self.dim, self.in_size + 1, 1))
        return core

    def resize(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Outputs ``[start, stop)`` along ``dim`` from the prepared input ``x`` (with an
        integer factor, ``start`` and ``stop - start`` must be multiples of it)."""
        d = self.dim
        if not self.factor:
            shape = [1] * x.ndim
            shape[d] = stop - start
            w = self.weight[start:stop].view(shape)
            return torch.lerp(x.index_select(d, self.first[start:stop]), x.index_select(d, self.second[start:stop]), w)
        s, q0 = self.factor, start // self.factor
        m = (stop - start) // s
        shape = list(x.shape)
        shape[d : d + 1] = [m, s]
        out = torch.empty(shape, device=x.device, dtype=x.dtype)
        for p, (a, w) in enumerate(self.phases):
            torch.lerp(x.narrow(d, q0 + a, m), x.narrow(d, q0 + a + 1, m), w, out=out.select(d + 1, p))
        return out.flatten(d, d + 1)

    def accumulate(self, acc: torch.Tensor, g: torch.Tensor, start: int, stop: int) -> None:
        """``acc += resizeᵀ g`` for ``g``, the gradient of outputs ``[start, stop)``."""
        d = self.dim
        if not self.factor:
            shape = [1] * g.ndim
            shape[d] = stop - start
            w = self.weight[start:stop].view(shape)
            acc.index_add_(d, self.first[start:stop], g * (1 - w)).index_add_(d, self.second[start:stop], g * w)
            return
        s, q0 = self.factor, start // self.factor
        m = (stop - start) // s
        g = g.unflatten(d, (m, s))
        for p, (a, w) in enumerate(self.phases):
            phase = g.select(d + 1, p)
            acc.narrow(d, q0 + a, m).add_(phase, alpha=1 - w)
            acc.narrow(d, q0 + a + 1, m).add_(phase, alpha=w)


def _loss_and_gradient(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, need_grad: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Summed cross-entropy over labelled pixels, its gradient with respect to the
    channels-last logits (``None`` unless ``need_grad``) and the number of labelled pixels."""
    x = logits.detach().float().permute(0, 2, 3, 1).contiguous()  # [B, h, w, K]
    batch, in_height, in_width, classes = x.shape
    height, width = labels.shape[-2:]
    rows = AxisResize(in_height, height, 1, x.device)
    cols = AxisResize(in_width, width, 2, x.device)
    band = max(1, BAND_ELEMENTS // (batch * width * classes))
    if rows.factor:
        band = max(rows.factor, band - band % rows.factor)
    valid = labels != ignore_index
    targets = torch.where(valid, labels, 0)[..., None]
    total = torch.zeros((), device=x.device, dtype=torch.float32)
    x_rows = rows.prepare(x)
    grad = x.new_zeros(rows.accumulator_shape(x.shape)) if need_grad else None
    for start in range(0, height, band):
        stop = min(start + band, height)
        y = rows.resize(x_rows, start, stop)  # [B, r, w, K]
        z = cols.resize(cols.prepare(y), 0, width)  # [B, r, W, K]
        here = valid[:, start:stop, :, None]
        target = targets[:, start:stop]
        shift = z.amax(-1, keepdim=True)
        picked = z.gather(-1, target)
        e = z.sub_(shift).exp_()
        norm = e.sum(-1, keepdim=True)
        total += ((norm.log() + shift - picked) * here).sum()  # log-sum-exp - label logit
        if grad is None:
            continue
        g = e.div_(norm).scatter_add_(-1, target, -torch.ones_like(picked)).mul_(here)  # softmax - onehot
        g_rows = y.new_zeros(cols.accumulator_shape(y.shape))
        cols.accumulate(g_rows, g, 0, width)
        rows.accumulate(grad, cols.finish(g_rows), start, stop)
    return total, None if grad is None else rows.finish(grad), valid.sum()


class _UpsampledCrossEntropy(torch.autograd.Function):
    """Forward also computes the gradient when one is needed (the band is at hand then,
    and its softmax is a by-product of the log-sum-exp): backward only scales it."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        with torch.autocast(logits.device.type, enabled=False):  # float32 whatever autocast says
            total, grad, count = _loss_and_gradient(logits, labels, ignore_index, ctx.needs_input_grad[0])
        ctx.save_for_backward(grad, count)
        ctx.dtype = logits.dtype
        return total / count.clamp(min=1)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad, count = ctx.saved_tensors
        scale = grad_output.float() / count.clamp(min=1)
        return (grad * scale).permute(0, 3, 1, 2).to(ctx.dtype), None, None


def upsampled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """``F.cross_entropy(F.interpolate(logits, labels' size, bilinear), labels, ignore_index)``
    (mean over labelled pixels) computed band by band in float32: the same value and
    gradient to float rounding, never holding the upsampled logits. A batch without any
    labelled pixel gives 0 (``F.cross_entropy`` gives NaN; a crop of only ignored pixels
    is no reason to stop a run).

    ``logits``: ``[B, K, h, w]``; ``labels``: ``[B, H, W]`` integers in ``[0, K)`` or
    ``ignore_index``. Any other value is an error naming it.
    """
    if logits.ndim != 4 or labels.ndim != 3 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"expected logits [B, K, h, w] and labels [B, H, W] with the same B; got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    classes = logits.shape[1]
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise ValueError(
            f"label value {labels[bad][0].item()} is outside [0, {classes}) and is not the ignore index {ignore_index}"
        )
    return _UpsampledCrossEntropy.apply(logits, labels.long(), ignore_index)
