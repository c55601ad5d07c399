"""Cross-entropy on logits upsampled to the label size, without the upsampled tensor.

SegFormer predicts at stride 4 and is trained on labels at full resolution: the loss of
the published recipe is ``cross_entropy(interpolate(logits, label size), labels)``. At
512² with 150 classes the upsampled logits are 39M floats per image, and autograd keeps
them, their log-softmax and gradients of the same size: on a CPU that memory traffic is
about half of a SegFormer-B0 training step, on a GPU several GB at batch 16.

``upsampled_cross_entropy`` computes the same value and gradient a band of label rows at
a time, channels last: a band's logits are interpolated (each row and column blended
from its two source rows and columns, exactly as ``F.interpolate`` does), reduced to the
log-sum-exp and the label's logit, and dropped; backward recomputes each band and sends
``softmax - onehot`` back through the same blends. It keeps the low-resolution logits
and one float per pixel.
"""

from __future__ import annotations

import torch

from .metrics import IGNORE_INDEX

BAND_ELEMENTS = 1 << 20  # upsampled logits per band: a few MB, so a band's passes stay in cache

Blend = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def bilinear_sources(out_size: int, in_size: int, device: torch.device) -> Blend:
    """Bilinear resizing (``align_corners=False``) of ``in_size`` samples to ``out_size``:
    each output's two source indices and the weight of the second, as PyTorch computes
    them (source ``(i + 0.5) * in/out - 0.5``, clamped at 0; no antialiasing)."""
    src = (torch.arange(out_size, device=device, dtype=torch.float64) + 0.5) * (in_size / out_size) - 0.5
    src = src.clamp_(min=0)
    first = src.floor().long().clamp_(max=in_size - 1)
    second = (first + 1).clamp_(max=in_size - 1)
    return first, second, (src - first).float()


def _band(x: torch.Tensor, rows: Blend, cols: Blend, start: int, stop: int) -> torch.Tensor:
    """Upsampled logits of label rows ``[start, stop)``, ``[B, stop - start, W, K]``, from
    channels-last float32 logits ``x`` ``[B, h, w, K]``."""
    first, second, weight = rows
    y = torch.lerp(x.index_select(1, first[start:stop]), x.index_select(1, second[start:stop]),
                   weight[start:stop, None, None])  # fmt: skip
    first, second, weight = cols
    return torch.lerp(y.index_select(2, first), y.index_select(2, second), weight[:, None])


class _UpsampledCrossEntropy(torch.autograd.Function):
    """Forward also computes the gradient when one is needed (the band is at hand then,
    and its softmax is a by-product of the log-sum-exp): backward only scales it."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int) -> torch.Tensor:
        x = logits.detach().float().permute(0, 2, 3, 1).contiguous()
        batch, in_height, in_width, classes = x.shape
        height, width = labels.shape[-2:]
        row_first, row_second, row_weight = rows = bilinear_sources(height, in_height, x.device)
        col_first, col_second, col_weight = cols = bilinear_sources(width, in_width, x.device)
        band = max(1, BAND_ELEMENTS // (batch * width * classes))
        valid = labels != ignore_index
        targets = torch.where(valid, labels, 0)[..., None]
        count = valid.sum()
        total = torch.zeros((), device=x.device, dtype=torch.float32)
        grad = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        for start in range(0, height, band):
            stop = min(start + band, height)
            z = _band(x, rows, cols, start, stop)
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
            # back through the column blend, then the row blend
            g_rows = torch.zeros((batch, stop - start, in_width, classes), device=x.device, dtype=x.dtype)
            w = col_weight[:, None]
            g_rows.index_add_(2, col_first, g * (1 - w)).index_add_(2, col_second, g.mul_(w))
            w = row_weight[start:stop, None, None]
            grad.index_add_(1, row_first[start:stop], g_rows * (1 - w))
            grad.index_add_(1, row_second[start:stop], g_rows.mul_(w))
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
