"""``optimize_for_inference(model)``: the same function as an eval-mode model, computed
with fewer passes over memory, built once.

What changes (each an exact identity of eval mode; float32 results agree to rounding):

- **BatchNorm folded** into the layer next to it: Mix-CFN's two norms into its expansion
  and its merged 3x3|5x5 depthwise kernel; a PoolFormer block's BatchNorm before the FFN
  into the FFN's expansion (``W diag(s)``, ``b + W t``); iRMB's norm into its depthwise
  kernel (with the skip connection as the kernel's centre tap); the learnable resizer's
  convolution + BatchNorm pairs; the decoder's BatchNorm into its folded projections.
- **Layer scales folded** into the projection before them: the FFN's ``dense2``, an
  attention's output projection. After PoolFormer's pooling mixer (no projection) the
  residual ``x + g * (pool(x) - x)`` is one ``torch.lerp(x, pool(x), g)``.
- **The decoder's folded weights computed once** (today's fold recomputes them per call).
- **Bias and activation fused** into the matrix product or convolution on the CPU through
  oneDNN's pointwise kernels (``torch.ops.mkldnn._linear_pointwise`` /
  ``_convolution_pointwise``): no separate bias copy (``addmm`` first copies the bias into
  its output) and no separate pass for GELU/ReLU after a depthwise convolution. Exports,
  compilation, other devices and autocast take the plain ``F.linear``/``F.conv2d`` path.
- **Freed memory kept for reuse** (glibc ``mallopt``; ``keep_freed_memory``): PyTorch's CPU
  allocator is ``malloc``, which hands large blocks back to the kernel on ``free``, so every
  new activation map page-faults its memory in again (measured: half the decoder's time).
  onnxruntime keeps an arena for the same reason. This is process-wide and only on Linux.

RoPE tables are built once per input size (``RotaryEmbedding2d``'s cache, valid here because
nothing trains), and maps stay channels-last between blocks (``layers.layout``).

The result is inference-only: ``train()`` on it raises, its parameters need no gradient,
and its state dict is not a checkpoint (save the original model).
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import sys

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..layers import (
    InvertedResidualMobileMixer, LayerScale, LearnableResizer, MixCFN, MixFFN, PoolingMixer, to_nchw, to_nhwc,
)  # fmt: skip
from ..layers.ffn import batch_norm_affine
from ..models import SegmentationModel
from ..models.encoder import EncoderBlock
from ..models.heads import ProjectedSumHead, resize_to

TRAINING_ERROR = (
    "this model was optimised for inference (BatchNorms and layer scales folded into its weights) and cannot "
    "train; train the original model"
)


class InferenceOnly(nn.Module):
    """A module that exists only in eval mode: ``train(True)`` raises (so the whole model's does)."""

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError(TRAINING_ERROR)
        return super().train(False)


def _pointwise_attr(act: nn.Module | None) -> tuple[str, list, str]:
    """oneDNN's name for ``act`` as a post-op: ``(attr, scalars, algorithm)``."""
    if act is None:
        return "none", [], ""
    if isinstance(act, nn.GELU):
        return "gelu", [], act.approximate
    if isinstance(act, nn.ReLU6):
        return "hardtanh", [0.0, 6.0], ""
    if isinstance(act, nn.ReLU):
        return "relu", [], ""
    raise ValueError(f"no fused path for activation {type(act).__name__}")


def _fused_path(x: torch.Tensor) -> bool:
    """Whether ``x`` may take oneDNN's fused kernels: eager float32 on the CPU, nothing to
    differentiate, not autocast, not traced, exported or compiled (those see plain ops)."""
    return (
        torch.backends.mkldnn.is_available()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not x.requires_grad
        and not torch.is_autocast_enabled("cpu")
        and not (torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing())
    )


class FusedLinear(InferenceOnly):
    """``act(x @ W^T + b)`` on the last dimension, bias and activation inside the matrix product."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, act: nn.Module | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.act = act
        self.attr = _pointwise_attr(act)

    @classmethod
    def of(cls, linear: nn.Linear, act: nn.Module | None = None) -> "FusedLinear":
        return cls(linear.weight, linear.bias, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _fused_path(x) and self.weight.dtype == torch.float32:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, *self.attr)
        y = F.linear(x, self.weight, self.bias)
        return y if self.act is None else self.act(y)

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, act={self.attr[0]}"


class FusedDepthwiseConv(InferenceOnly):
    """``act(depthwise_conv(x) + b)`` on a ``[B, H, W, C]`` map (through its channels-last
    NCHW view), bias and activation inside the convolution."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, act: nn.Module | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.padding = weight.shape[-1] // 2
        self.act = act
        self.attr = _pointwise_attr(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, groups, p = to_nchw(x), self.weight.shape[0], self.padding
        if _fused_path(x) and self.weight.dtype == torch.float32:
            y = torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, [p, p], [1, 1], [1, 1], groups,
                                                        *self.attr)  # fmt: skip
        else:
            y = F.conv2d(x, self.weight, self.bias, padding=p, groups=groups)
            y = y if self.act is None else self.act(y)
        return to_nhwc(y)


class InferenceFFN(InferenceOnly):
    """Mix-FFN and Mix-CFN (BatchNorm) as three calls: expansion (norms before and after
    folded in), one depthwise convolution with the activation, projection (layer scale
    folded in)."""

    def __init__(self, dense1: FusedLinear, dwconv: FusedDepthwiseConv, dense2: FusedLinear) -> None:
        super().__init__()
        self.dense1, self.dwconv, self.dense2 = dense1, dwconv, dense2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense2(self.dwconv(self.dense1(x)))


class PoolingResidual(InferenceOnly):
    """PoolFormer's ``x + g * (AvgPool(x) - x)`` (pooling mixer, layer scale, residual) as
    one pooling and one ``lerp``."""

    def __init__(self, mixer: PoolingMixer, gamma: torch.Tensor) -> None:
        super().__init__()
        self.pool_size = mixer.pool_size
        self.gamma = nn.Parameter(gamma.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pool_size
        pooled = F.avg_pool2d(to_nchw(x), k, stride=1, padding=k // 2, count_include_pad=False)
        return torch.lerp(x, to_nhwc(pooled), self.gamma)


class InferenceBlock(InferenceOnly):
    """``EncoderBlock`` with its pieces folded: ``mix_residual`` maps ``x`` to ``x + mixer
    branch`` (``None``: ``x + mixer(norm_1(x))``), the FFN carries the norm before it and
    its layer scale."""

    def __init__(self, block: EncoderBlock, mixer: nn.Module, mix_residual: nn.Module | None, ffn: nn.Module,
                 ffn_norm: nn.Module, layer_scale_1: nn.Module) -> None:  # fmt: skip
        super().__init__()
        self.pre_norm, self.local_connection = block.pre_norm, block.local_connection
        self.mix_norm = block.layer_norm_1 if block.pre_norm else nn.Identity()
        self.attention, self.mix_residual, self.layer_scale_1 = mixer, mix_residual, layer_scale_1
        self.ffn_norm, self.mlp = ffn_norm, ffn
        self.out_norm = nn.Identity() if block.pre_norm else block.layer_norm_2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.mix_residual is not None:
            x = self.mix_residual(x)
        else:
            x = x + self.layer_scale_1(self.attention(self.mix_norm(x)))
        x = x + self.mlp(self.ffn_norm(x))
        return self.out_norm(x + shortcut if self.local_connection else x)


class InferenceHead(InferenceOnly):
    """The folded decoder with its weights computed once: per-stage projections ``M_i A_i``
    (decoder BatchNorm included), one bias, the sum of the upsampled stages, activation,
    classifier (``ProjectedSumHead.fused_features``' algebra)."""

    def __init__(self, head: ProjectedSumHead) -> None:
        super().__init__()
        weights, bias = head.folded_projections(fold_norm=head.batch_norm.track_running_stats)
        self.batch_norm = None if head.batch_norm.track_running_stats else head.batch_norm
        self.projections = nn.ModuleList([FusedLinear(weights[0], bias), *(FusedLinear(w, None) for w in weights[1:])])
        self.act = head.act
        classifier = head.classifier
        self.classifier = FusedLinear(classifier.weight.view(classifier.out_channels, -1), classifier.bias)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = to_nchw(self.projections[0](to_nhwc(features[0])))
        size = out.shape[-2:]
        in_place = not torch.is_grad_enabled() and not torch.compiler.is_exporting()
        for x, project in zip(features[1:], self.projections[1:]):
            stage = resize_to(to_nchw(project(to_nhwc(x))), size)
            out = out.add_(stage) if in_place else out + stage
        if self.batch_norm is not None:
            out = self.batch_norm(out)
        return to_nchw(self.classifier(to_nhwc(self.act(out))))


# --- building it ----------------------------------------------------------------------
def _scaled_rows(linear: nn.Linear | FusedLinear, scale: torch.Tensor, shift: torch.Tensor | None = None) -> FusedLinear:
    """``scale * linear(x) + shift``, as one linear layer."""
    bias = linear.bias if linear.bias is not None else torch.zeros_like(scale)
    shift = torch.zeros_like(scale) if shift is None else shift
    return FusedLinear(scale[:, None] * linear.weight, scale * bias + shift, getattr(linear, "act", None))


def _scaled_inputs(linear: nn.Linear, scale: torch.Tensor, shift: torch.Tensor) -> FusedLinear:
    """``linear(scale * x + shift)``, as one linear layer."""
    bias = linear.bias if linear.bias is not None else linear.weight.new_zeros(linear.weight.shape[0])
    return FusedLinear(linear.weight * scale[None, :], bias + linear.weight @ shift)


def _folded_ffn(ffn: nn.Module, norm: nn.Module, layer_scale: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The FFN with a BatchNorm ``norm`` before it and ``layer_scale`` after it folded in;
    returns ``(ffn, the norm still to apply before it)``."""
    fold_norm = isinstance(norm, nn.BatchNorm2d) and hasattr(ffn, "dense1")
    dense1 = _scaled_inputs(ffn.dense1, *batch_norm_affine(norm)) if fold_norm else FusedLinear.of(ffn.dense1)
    dense2 = FusedLinear.of(ffn.dense2)
    if isinstance(layer_scale, LayerScale):
        dense2 = _scaled_rows(dense2, layer_scale.gamma)
    if isinstance(ffn, MixFFN):
        conv = ffn.dwconv.dwconv
        ffn = InferenceFFN(dense1, FusedDepthwiseConv(conv.weight, conv.bias, ffn.act), dense2)
    elif isinstance(ffn, MixCFN) and isinstance(ffn.norm1, nn.BatchNorm2d):
        dense1 = _scaled_rows(dense1, *batch_norm_affine(ffn.norm1))
        scale, shift = batch_norm_affine(ffn.norm2)
        kernel, bias = ffn.mixconv.merged_kernel()
        conv = FusedDepthwiseConv(scale[:, None, None, None] * kernel, scale * bias + shift, ffn.act)
        ffn = InferenceFFN(dense1, conv, dense2)
    else:  # Mix-CFN with GroupNorm: only the layers at its ends change
        ffn.dense1, ffn.dense2 = dense1, dense2
    return ffn, nn.Identity() if fold_norm else norm


def _folded_block(block: EncoderBlock) -> InferenceBlock:
    ffn_norm = block.layer_norm_2 if block.pre_norm else block.layer_norm_1
    ffn, ffn_norm = _folded_ffn(block.mlp, ffn_norm, block.layer_scale_2)
    mixer, scale = block.attention, block.layer_scale_1
    mix_residual = None
    if isinstance(scale, LayerScale):
        output = getattr(mixer, "output", None)
        if isinstance(mixer, PoolingMixer) and not block.pre_norm:
            mix_residual = PoolingResidual(mixer, scale.gamma)
            scale = nn.Identity()
        elif output is not None:  # attention with an output projection
            output.dense = _scaled_rows(output.dense, scale.gamma)
            scale = nn.Identity()
        elif isinstance(mixer, InvertedResidualMobileMixer):
            mixer.proj = _scaled_conv(mixer.proj, scale.gamma)
            scale = nn.Identity()
    return InferenceBlock(block, mixer, mix_residual, ffn, ffn_norm, scale)


def _scaled_conv(conv: nn.Conv2d, scale: torch.Tensor) -> nn.Conv2d:
    """``scale * conv(x)`` per output channel, as one convolution."""
    folded = copy.deepcopy(conv)
    folded.weight.copy_(scale.view(-1, *([1] * (conv.weight.ndim - 1))) * conv.weight)
    if folded.bias is not None:
        folded.bias.copy_(scale * conv.bias)
    return folded


def _fold_irmb(mixer: InvertedResidualMobileMixer) -> None:
    """``BN(a + dwconv(a))`` as ``a + dwconv'(a)``: ``dwconv'`` has kernel ``s k + (s - 1) delta``
    (``delta`` the centre tap) and bias ``t``; the norm becomes the identity."""
    scale, shift = batch_norm_affine(mixer.norm)
    conv = mixer.dwconv
    kernel = scale[:, None, None, None] * conv.weight
    kernel[:, 0, conv.kernel_size[0] // 2, conv.kernel_size[1] // 2] += scale - 1
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                       groups=conv.groups, device=kernel.device, dtype=kernel.dtype)  # fmt: skip
    folded.weight.copy_(kernel)
    folded.bias.copy_(shift)
    mixer.dwconv, mixer.norm = folded, nn.Identity()


def _fold_resizer(resizer: LearnableResizer) -> None:
    """The resizer's convolution + BatchNorm pairs as single convolutions."""
    for block in resizer.blocks:
        block.conv1, block.norm1 = fuse_conv_bn_eval(block.conv1, block.norm1), nn.Identity()
        block.conv2, block.norm2 = fuse_conv_bn_eval(block.conv2, block.norm2), nn.Identity()
    resizer.fuse = nn.Sequential(fuse_conv_bn_eval(resizer.fuse[0], resizer.fuse[1]))


def _replace_linears(module: nn.Module) -> None:
    """Every remaining ``nn.Linear`` as a ``FusedLinear`` (no bias copy)."""
    for name, child in module.named_children():
        if type(child) is nn.Linear:
            setattr(module, name, FusedLinear.of(child))
        else:
            _replace_linears(child)


@torch.no_grad()
def optimize_for_inference(model: SegmentationModel, reuse_memory: bool = True) -> SegmentationModel:
    """An inference-only copy of an eval-mode ``model`` with the same outputs, computed with
    fewer passes over memory (module docstring). ``model`` itself is unchanged.

    ``reuse_memory`` (default) also keeps freed memory in the process for the next call
    (``keep_freed_memory``). A model in training mode is refused: its BatchNorms use batch
    statistics there, which no folding can reproduce."""
    if model.training:
        raise ValueError("optimize_for_inference: the model is in training mode; call model.eval() first "
                         "(folding uses the BatchNorms' running statistics)")  # fmt: skip
    optimized = copy.deepcopy(model)
    encoder = optimized.encoder
    for stage in encoder.block:
        for j, block in enumerate(stage):
            for mixer in block.attention.modules():
                if isinstance(mixer, InvertedResidualMobileMixer):
                    _fold_irmb(mixer)
            stage[j] = _folded_block(block)
    for module in optimized.modules():
        if isinstance(module, LearnableResizer):
            _fold_resizer(module)
    if optimized.decode_head.resizers is None:  # bilinear upsampling: the head folds
        optimized.decode_head = InferenceHead(optimized.decode_head)
    _replace_linears(optimized)
    optimized.requires_grad_(False)
    if reuse_memory:
        keep_freed_memory()
    return optimized.eval()


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_KEEP_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Let glibc keep up to 1 GiB of freed memory for reuse instead of returning it to the
    kernel (``mallopt``: no ``mmap`` for blocks under 1 GiB, no trimming under 1 GiB free),
    as onnxruntime's arena does. Without it every large activation map of every call is
    faulted in page by page. Process-wide; returns whether it applied (glibc on Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BYTES) and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
