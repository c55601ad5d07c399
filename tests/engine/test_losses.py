"""The fused upsampled cross-entropy equals interpolate + cross_entropy, value and gradient."""

import pytest
import torch
import torch.nn.functional as F

from segformer_lab.engine import losses
from segformer_lab.engine.losses import bilinear_sources, upsampled_cross_entropy


def reference(logits, labels, ignore_index=255):
    up = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, labels, ignore_index=ignore_index)


def random_case(batch, classes, low, high, seed=0, ignored=0.2):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(batch, classes, *low, generator=g)).requires_grad_()
    labels = torch.randint(0, classes, (batch, *high), generator=g)
    labels[torch.rand(batch, *high, generator=g) < ignored] = 255
    return logits, labels


@pytest.mark.parametrize(
    "low, high",
    [((7, 9), (29, 37)), ((16, 16), (64, 64)), ((20, 30), (13, 17)), ((8, 8), (8, 8)), ((5, 11), (40, 11)),
     ((1, 3), (4, 9)), ((7, 9), (30, 36))],
    ids=["odd-up", "x4", "down", "same", "rows-x8", "one-row", "odd-rows-x4-cols"],
)
@pytest.mark.parametrize("band", [losses.BAND_ELEMENTS, 50])  # one band; many, the last one partial
def test_value_and_gradient_match_the_reference(low, high, band, monkeypatch):
    monkeypatch.setattr(losses, "BAND_ELEMENTS", band)
    logits, labels = random_case(2, 5, low, high)
    expected = reference(logits, labels)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    value = upsampled_cross_entropy(logits, labels)
    (grad,) = torch.autograd.grad(value, logits)
    torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-8)


def test_sources_are_pytorchs_bilinear_weights():
    """Resizing with the returned sources and weights reproduces F.interpolate."""
    x = torch.randn(13)
    for out in (4, 13, 30, 51):
        first, second, w = bilinear_sources(out, 13, x.device)
        expected = F.interpolate(x[None, None, None], size=(1, out), mode="bilinear", align_corners=False).flatten()
        torch.testing.assert_close(torch.lerp(x[first], x[second], w), expected)


def test_channels_last_logits_and_reduced_precision():
    logits, labels = random_case(2, 4, (6, 7), (23, 27), seed=1)
    cl = logits.detach().to(memory_format=torch.channels_last).requires_grad_()
    torch.testing.assert_close(upsampled_cross_entropy(cl, labels), reference(logits, labels))
    half = logits.detach().bfloat16().requires_grad_()
    value = upsampled_cross_entropy(half, labels)
    assert value.dtype == torch.float32  # computed in float32 whatever the logits are
    torch.testing.assert_close(value, reference(half.detach().float(), labels))
    (grad,) = torch.autograd.grad(value, half)
    assert grad.dtype == torch.bfloat16


def test_float32_under_autocast():
    logits, labels = random_case(1, 4, (6, 6), (24, 24), seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = upsampled_cross_entropy(logits, labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, reference(logits.detach(), labels))


def test_scaled_loss_scales_the_gradient():
    logits, labels = random_case(1, 3, (4, 4), (10, 12), seed=2)
    (g1,) = torch.autograd.grad(upsampled_cross_entropy(logits, labels), logits)
    (g3,) = torch.autograd.grad(3 * upsampled_cross_entropy(logits, labels), logits)
    torch.testing.assert_close(g3, 3 * g1)


def test_all_ignored_gives_zero_not_nan():
    logits, labels = random_case(2, 3, (4, 4), (8, 8), ignored=1.0)
    value = upsampled_cross_entropy(logits, labels)
    assert value.item() == 0.0
    (grad,) = torch.autograd.grad(value, logits)
    assert not grad.any()


def test_without_gradient():
    logits, labels = random_case(1, 4, (5, 5), (17, 19), seed=3)
    with torch.inference_mode():
        value = upsampled_cross_entropy(logits, labels)
    torch.testing.assert_close(value, reference(logits.detach(), labels))


def test_bad_labels_and_shapes_are_named():
    logits, labels = random_case(1, 4, (5, 5), (9, 9))
    labels[0, 3, 4] = 7
    with pytest.raises(ValueError, match="label value 7 is outside"):
        upsampled_cross_entropy(logits, labels)
    with pytest.raises(ValueError, match=r"labels \[B, H, W\].*\(1, 4, 5, 5\) and \(9, 9\)"):
        upsampled_cross_entropy(logits, labels[0])
