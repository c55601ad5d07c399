"""Decode heads: turn the encoder's stage maps into per-pixel class logits at stride 4.

Both heads project every stage to ``D`` channels, bring it to the first stage's
resolution, combine the stages linearly, then BatchNorm, activation, dropout (of whole
channels by default, as SegFormer's mmseg head) and a 1x1 classifier. They differ only in the linear combination: SegFormer's all-MLP head
concatenates and applies ``linear_fuse``; BoostFormer's weighted-sum head adds the stages
with a learnable scalar each.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..layers import LearnableResizer, build_act, to_nchw, to_nhwc

# dropout before the classifier, by ``DecoderConfig.dropout_mode``: whole feature maps (as
# SegFormer's mmseg head, ``Dropout2d``) or single activations (as transformers' port)
DROPOUTS: dict[str, type[nn.Module]] = {"channel": nn.Dropout2d, "element": nn.Dropout}


class StageProjection(nn.Module):
    """Per-stage channel projection (a Linear over channels)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)


def resize_to(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Bilinear resize (align_corners=False), as the published decoders do.

    Called only on the deeper stages: stage 1 already has the output size. No shape
    comparison here, so exported graphs carry no guard on the input size."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ProjectedSumHead(nn.Module):
    """The shared decoder. Subclasses define the linear combination of the projected,
    upsampled stage maps twice: as published (``combine``) and as the linear map ``M_i``
    it applies to stage ``i`` (``mix(i, t)``: ``M_i t`` for a weight matrix or bias).

    Fast path (``fold=True``): the combination is linear and bilinear upsampling is a
    linear map over positions with weights summing to one, so the two commute:
    ``combine(Up(A_i x_i + b_i)) = sum_i Up(M_i A_i x_i) + sum_i M_i b_i``. ``M_i A_i`` is one
    Linear applied at the stage's own resolution, and whatever the combination costs at
    stride 4 (for the all-MLP head, a 1x1 convolution over ``4 * D`` channels: most of the
    published MACs) never runs. In eval mode the BatchNorm affine is folded in too. The
    weights stay the published ones (checkpoints are unchanged) and gradients flow to
    them. With ``resizer`` the upsampling is learnable (not linear): no folding then.

    The keyword arguments are ``DecoderConfig``'s fields (``width`` is ``D``).
    """

    def __init__(
        self,
        in_widths: tuple[int, ...],
        num_classes: int,
        *,
        width: int = 256,
        dropout: float = 0.1,
        dropout_mode: str = "channel",
        act: str = "relu",
        fold: bool = True,
        resizer: bool = False,
    ) -> None:
        super().__init__()
        d = width
        self.fold = fold and not resizer
        self.linear_c = nn.ModuleList(StageProjection(w, d) for w in in_widths)
        self.resizers = nn.ModuleList(LearnableResizer(d) for _ in in_widths[1:]) if resizer else None
        self.batch_norm = nn.BatchNorm2d(d)
        self.act = build_act(act)
        self.dropout = DROPOUTS[dropout_mode](dropout)
        self.classifier = nn.Conv2d(d, num_classes, kernel_size=1)

    def mix(self, stage: int, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def combine(self, maps: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def folded_projections(self, fold_norm: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Per-stage weights ``M_i A_i`` and the single bias ``sum_i M_i b_i``; with
        ``fold_norm`` the BatchNorm's running-statistics affine is folded in as well."""
        weights, bias = [], 0
        for i, proj in enumerate(self.linear_c):
            weights.append(self.mix(i, proj.proj.weight))
            bias = bias + self.mix(i, proj.proj.bias)
        if fold_norm:
            bn = self.batch_norm
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            weights = [scale[:, None] * w for w in weights]
            bias = scale * (bias - bn.running_mean) + bn.bias
        return weights, bias

    def fused_features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """BatchNorm(combination) computed the fast way; ``[B, D, H_1, W_1]``."""
        fold_norm = not self.training and self.batch_norm.track_running_stats
        weights, bias = self.folded_projections(fold_norm)
        # Stage 1 sets the output size and takes the bias (bilinear resizing preserves
        # constants, so one bias for all stages is exact). Without autograd the sum is
        # accumulated in place; with it, not: an in-place add on the permuted view makes
        # backward clone and copy the whole map once per stage.
        out = to_nchw(F.linear(to_nhwc(features[0]), weights[0], bias))
        for x, w in zip(features[1:], weights[1:]):
            stage = resize_to(to_nchw(F.linear(to_nhwc(x), w)), out.shape[-2:])
            out = out + stage if torch.is_grad_enabled() else out.add_(stage)
        return out if fold_norm else self.batch_norm(out)

    def published_features(self, features: list[torch.Tensor]) -> torch.Tensor:
        """BatchNorm(combination) exactly as published; ``[B, D, H_1, W_1]``."""
        projected = [to_nchw(p.proj(to_nhwc(x))) for x, p in zip(features, self.linear_c)]
        size = projected[0].shape[-2:]
        if self.resizers is None:
            upsampled = [resize_to(y, size) for y in projected[1:]]
        else:
            upsampled = [resizer(y, tuple(size)) for y, resizer in zip(projected[1:], self.resizers)]
        return self.batch_norm(self.combine(projected[:1] + upsampled))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.fused_features(features) if self.fold else self.published_features(features)
        x = self.dropout(self.act(x))
        w = self.classifier.weight.view(self.classifier.out_channels, -1)
        return to_nchw(F.linear(to_nhwc(x), w, self.classifier.bias))


class AllMLPHead(ProjectedSumHead):
    """SegFormer's all-MLP decoder (Xie et al., 2021, Sec. 3.2): ``linear_fuse`` (a bias-free
    1x1 conv) over ``concat(F_4, F_3, F_2, F_1)`` of the upsampled projections."""

    def __init__(self, in_widths: tuple[int, ...], num_classes: int, *, width: int = 256, **settings) -> None:
        super().__init__(in_widths, num_classes, width=width, **settings)
        self.linear_fuse = nn.Conv2d(width * len(in_widths), width, kernel_size=1, bias=False)

    def mix(self, stage: int, t: torch.Tensor) -> torch.Tensor:
        """``W_i t`` with ``W_i`` the ``[D, D]`` block of ``linear_fuse`` that sees stage ``i``
        (the published head concatenates the stages deepest first)."""
        d = self.linear_fuse.out_channels
        n = len(self.linear_c)
        w = self.linear_fuse.weight.view(d, n * d)
        return w[:, (n - 1 - stage) * d : (n - stage) * d] @ t

    def combine(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.linear_fuse(torch.cat(maps[::-1], dim=1))


class WeightedSumHead(ProjectedSumHead):
    """BoostFormer's decoder: ``sum_i w_i F_i`` with one learnable scalar per stage
    (initialised to 1, no softmax) instead of concatenation and ``linear_fuse``."""

    def __init__(self, in_widths: tuple[int, ...], num_classes: int, **settings) -> None:
        super().__init__(in_widths, num_classes, **settings)
        self.stage_weights = nn.Parameter(torch.ones(len(in_widths)))

    def mix(self, stage: int, t: torch.Tensor) -> torch.Tensor:
        return self.stage_weights[stage] * t

    def combine(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return sum(w * m for w, m in zip(self.stage_weights, maps))


# name -> head class, by ``DecoderConfig.type``; the one table configs validate against
HEADS: dict[str, type[ProjectedSumHead]] = {"all_mlp": AllMLPHead, "weighted_sum": WeightedSumHead}
