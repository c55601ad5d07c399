"""``optimize_for_inference``: the same logits as the eval-mode model on every registered
preset (random BatchNorm statistics, affine parameters and layer scales moved off their
initial values: an identity BatchNorm would hide a folding mistake), at odd sizes, in
float32 (fused kernels) and float64 (the algebra alone), and through ONNX export."""

import pytest
import torch
from helpers import randomised
from torch import nn

import segformer_lab as sl
from segformer_lab.inference.optimize import TRAINING_ERROR, FusedLinear
from segformer_lab.layers import LayerScale

pytestmark = pytest.mark.usefixtures("one_thread")


def preset(name: str, shallow) -> sl.SegmentationModel:
    """The registered model with one block per stage (``shallow``), 5 classes, every
    weight, norm, layer scale and BatchNorm statistic perturbed, in eval mode (an input
    resizer resizes to 40x56, not 512x512, to stay fast)."""
    config = shallow(sl.get_config(name, num_classes=5))
    if config.input_resizer is not None:
        config = config.replace(input_resizer=(40, 56))
    return randomised(sl.create_model(config=config), seed=len(name)).eval()


@pytest.mark.parametrize("name", sl.list_models())
def test_same_logits_on_every_preset(name, shallow):
    model = preset(name, shallow)
    optimized = sl.optimize_for_inference(model)
    x = torch.randn(2, 3, 35, 47)
    with torch.inference_mode():
        expected, got = model(x), optimized(x)
    assert got.shape == expected.shape == (2, 5, 9, 12)
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= 1e-5 * scale, name
    # float64 takes the plain ops: the folding itself is exact, not merely close
    model64, optimized64 = model.double(), sl.optimize_for_inference(model.double())
    with torch.inference_mode():
        expected, got = model64(x.double()), optimized64(x.double())
    assert (got - expected).abs().max() <= 1e-11 * expected.abs().max(), name


@pytest.mark.parametrize("name", ["boostformer_b0", "segformer_b2_poolformer", "segformer_b2_irmb"])
def test_batch_norms_and_layer_scales_are_folded_away(name, shallow):
    """What is left to run: no BatchNorm inside blocks (only the post-norm block's last one),
    no layer-scale multiply, no plain Linear (each one a fused kernel)."""
    optimized = sl.optimize_for_inference(preset(name, shallow))
    names = [n for n, m in optimized.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(n.endswith("out_norm") for n in names), names
    assert not any(isinstance(m, LayerScale) for m in optimized.modules())
    assert not any(type(m) is nn.Linear for m in optimized.modules())
    assert any(isinstance(m, FusedLinear) for m in optimized.modules())


def test_training_is_refused_in_one_line(shallow):
    model = preset("boostformer_b0", shallow)
    with pytest.raises(ValueError, match="training mode; call model.eval"):
        sl.optimize_for_inference(model.train())
    optimized = sl.optimize_for_inference(model.eval())
    with pytest.raises(RuntimeError) as err:
        optimized.train()
    assert str(err.value) == TRAINING_ERROR and "\n" not in TRAINING_ERROR
    assert not any(p.requires_grad for p in optimized.parameters())
    assert all(p.requires_grad for p in model.parameters())  # the original is untouched


def test_optimized_model_exports_to_onnx(shallow, onnx_matches):
    """Dynamic height and width, run at another size than exported: the plain-op path of
    every replacement (pooling residual, Mix-CFN, fused linear and depthwise convolution,
    the head; RoPE too)."""
    onnx_matches(sl.optimize_for_inference(preset("boostformer_b0_rope_mixed", shallow)))


def test_segmenter_runs_the_optimized_model(shallow):
    model = preset("boostformer_b0", shallow)
    segmenter = sl.Segmenter(model)
    assert any(isinstance(m, FusedLinear) for m in segmenter.model.modules())
    x = torch.randn(1, 3, 45, 61)
    with torch.inference_mode():
        torch.testing.assert_close(segmenter.model(x), model(x), atol=1e-5, rtol=1e-5)
