"""The folded all-MLP head computes the published head's function and gradients."""

import pytest
import torch

import segformer_lab as sl
from segformer_lab.layers import DropPath


def twin_models(name="segformer_b0", num_classes=7):
    """The same weights in a folded and a published (unfolded) head."""
    folded = sl.create_model(name, num_classes=num_classes)
    published = sl.create_model(name, num_classes=num_classes, decoder={"fold": False})
    bn = folded.decode_head.batch_norm
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.normal_()
    published.load_state_dict(folded.state_dict())
    return folded, published


@pytest.mark.parametrize("size", [(128, 128), (97, 65)])
def test_folded_head_equals_published_in_eval(size):
    folded, published = (m.eval() for m in twin_models())
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), published(x), rtol=1e-4, atol=1e-4)


def test_folded_head_gives_the_same_gradients_in_training():
    folded, published = (m.train() for m in twin_models())
    folded.decode_head.dropout.p = published.decode_head.dropout.p = 0.0
    for model in (folded, published):
        for module in model.modules():
            if isinstance(module, DropPath):
                module.p = 0.0
    x = torch.randn(2, 3, 97, 65)
    for model in (folded, published):
        logits = model(x)
        (logits * torch.linspace(-1, 1, logits.numel()).view_as(logits)).sum().backward()
    grads = {name: p.grad for name, p in published.named_parameters()}
    # Biases feeding a training-mode BatchNorm have an exact gradient of zero; both
    # paths give float noise there, so the absolute tolerance follows the overall scale.
    atol = 1e-4 * max(g.abs().max() for g in grads.values())
    for name, p in folded.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-3, atol=atol, msg=name)
    # Batch statistics were updated identically.
    torch.testing.assert_close(
        folded.decode_head.batch_norm.running_var, published.decode_head.batch_norm.running_var
    )


@pytest.mark.parametrize("mode", ["channel", "element"])
def test_decoder_dropout_mode(mode):
    """``channel`` (SegFormer's mmseg head) zeroes whole maps before the classifier;
    ``element`` (transformers' port) single activations."""
    head = sl.create_model("segformer_b0", num_classes=3, decoder={"dropout_mode": mode, "dropout": 0.5}).decode_head
    head.train()
    kept = head.dropout(torch.ones(2, 64, 9, 11)) != 0
    per_map = kept.flatten(2)
    whole_maps = bool((per_map.all(-1) | ~per_map.any(-1)).all())
    assert whole_maps == (mode == "channel")
    assert 0.2 < kept.float().mean() < 0.8


def test_unknown_dropout_mode_is_refused():
    with pytest.raises(sl.models.ConfigError, match="dropout_mode"):
        sl.create_model("segformer_b0", decoder={"dropout_mode": "spatial"})
