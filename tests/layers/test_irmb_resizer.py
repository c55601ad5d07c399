"""iRMB token mixer (EMO) and learnable resizer (Talebi & Milanfar): shapes at odd sizes,
a naive reference for the attention, gradients, exact bilinear start (also inside models),
export (torch.export and ONNX)."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import segformer_lab as sl
from segformer_lab.layers.irmb import InvertedResidualMobileMixer
from segformer_lab.layers.resizer import LearnableResizer

SIZES = [(13, 9), (10, 10), (5, 7), (4, 4), (3, 11)]


def mixer(act="gelu", dim=32, heads=2, expansion=4.0):
    return InvertedResidualMobileMixer(dim, heads, expansion=expansion, act=act)


# --- a naive reference, written from the operator's definition
def naive_pool(u, p):
    """Mean over each p x p window of [B, H, W, C]; the last window of a side may be partial."""
    _, h, w, _ = u.shape
    rows = []
    for i in range(0, h, p):
        rows.append(torch.stack([u[:, i : i + p, j : j + p].mean(dim=(1, 2)) for j in range(0, w, p)], dim=1))
    return torch.stack(rows, dim=1)


def naive_attention(m, u):
    b, h, w, c = u.shape
    pooled = naive_pool(u.double(), m.pool_size)
    heads, d = m.num_heads, c // m.num_heads
    weight = m.value.weight.double()[:, :, 0, 0]
    v = torch.einsum("bijc,kc->bijk", pooled, weight) + m.value.bias.double()
    q = u.double().reshape(b, h * w, heads, d)
    k = pooled.reshape(b, -1, heads, d)
    v = v.reshape(b, k.shape[1], heads, -1)
    out = []
    for n in range(heads):
        scores = q[:, :, n] @ k[:, :, n].transpose(1, 2) / math.sqrt(d)
        out.append(scores.softmax(-1) @ v[:, :, n])
    return torch.cat(out, dim=-1).reshape(b, h, w, -1)


def naive_mixer(m, u):
    """Eval-mode forward: Conv1x1(act(BN(a + DW3x3(a))))."""
    a = naive_attention(m, u).permute(0, 3, 1, 2)
    z = a + F.conv2d(a, m.dwconv.weight.double(), padding=1, groups=a.shape[1])
    bn = m.norm
    z = (z - bn.running_mean.double()[:, None, None]) / torch.sqrt(bn.running_var.double()[:, None, None] + bn.eps)
    z = z * bn.weight.double()[:, None, None] + bn.bias.double()[:, None, None]
    z = F.gelu(z)
    y = F.conv2d(z, m.proj.weight.double(), m.proj.bias.double())
    return y.permute(0, 2, 3, 1)


@pytest.mark.parametrize("size", SIZES)
def test_mixer_keeps_shape_at_odd_sizes(size):
    m = mixer()
    u = torch.randn(2, *size, 32)
    y = m(u)
    assert y.shape == u.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", SIZES)
def test_key_count_is_ceil_of_pooled_sides(size):
    h, w = size
    keys = mixer().pool(torch.randn(2, h, w, 32))
    assert keys.shape == (2, math.ceil(h / 5), math.ceil(w / 5), 32)
    assert keys.shape[1] * keys.shape[2] == math.ceil(h / 5) * math.ceil(w / 5)


@pytest.mark.parametrize("size", [(13, 9), (4, 4), (10, 10)])
def test_pooling_keeps_partial_windows(size):
    u = torch.randn(2, *size, 32)
    torch.testing.assert_close(mixer().pool(u), naive_pool(u, 5), atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", SIZES)
def test_pooling_equals_ceil_mode_avg_pool(size):
    u = torch.randn(2, *size, 32)
    pool = nn.AvgPool2d(5, 5, ceil_mode=True, count_include_pad=False)
    expected = pool(u.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    torch.testing.assert_close(mixer().pool(u), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(13, 9), (5, 7), (4, 4)])
def test_attention_matches_naive_reference(size):
    m = mixer()
    u = torch.randn(2, *size, 32)
    torch.testing.assert_close(m.attend(u).double(), naive_attention(m, u), atol=1e-5, rtol=0)


def test_eval_forward_matches_naive_reference():
    m = mixer()
    with torch.no_grad():
        m.norm.running_mean.normal_()
        m.norm.running_var.uniform_(0.5, 2.0)
        m.norm.weight.normal_()
        m.norm.bias.normal_()
    m.eval()
    u = torch.randn(2, 13, 9, 32)
    torch.testing.assert_close(m(u).double(), naive_mixer(m, u), atol=1e-5, rtol=0)


def test_value_heads_are_wider_than_key_heads():
    m = mixer(expansion=3.0)
    assert m.hidden == 96 and m.head_dim == 16
    assert m.attend(torch.randn(2, 5, 7, 32)).shape == (2, 5, 7, 96)


@pytest.mark.parametrize("act", ["gelu", "relu6"])
def test_mixer_gradients_reach_every_parameter(act):
    m = mixer(act).train()
    u = torch.randn(2, 13, 9, 32, requires_grad=True)
    m(u).square().mean().backward()
    assert torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_relu6_variant():
    m = mixer("relu6")
    assert isinstance(m.act, nn.ReLU6)
    assert m(torch.randn(2, 5, 7, 32)).shape == (2, 5, 7, 32)


def test_irmb_with_relu_builds_and_runs():
    """Every activation a config accepts builds: the mixer uses the shared table."""
    m = mixer("relu")
    assert isinstance(m.act, nn.ReLU)
    config = sl.get_config("segformer_b2_irmb", num_classes=3).with_stages(depth=1, act="relu")
    model = sl.create_model(config=config).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 48)).shape == (1, 3, 16, 12)


def test_unknown_activation_is_a_config_error_naming_stage_and_field():
    config = sl.get_config("segformer_b2_irmb")
    with pytest.raises(sl.ConfigError, match=r"stage 2: act 'swish' is unknown; choose one of \('gelu', 'relu', 'relu6'\)"):
        config.with_stages(act=["gelu", "gelu", "swish", "gelu"])


def test_mixer_rejects_bad_arguments():
    with pytest.raises(ValueError):
        InvertedResidualMobileMixer(32, 3)
    with pytest.raises(ValueError):
        InvertedResidualMobileMixer(32, 2, act="swish")


def test_mixer_exports_with_dynamic_height_and_width():
    m = mixer().eval()
    dims = {1: torch.export.Dim("height", min=8, max=512), 2: torch.export.Dim("width", min=8, max=512)}
    program = torch.export.export(m, (torch.randn(2, 13, 9, 32),), dynamic_shapes={"u": dims})
    with torch.no_grad():
        for size in [(22, 17), (8, 8), (40, 11)]:
            u = torch.randn(2, *size, 32)
            torch.testing.assert_close(program.module()(u), m(u), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(13, 9), (4, 4), (5, 11), (3, 7)])
def test_spare_keys_pool_zeros_and_change_nothing(size):
    """The export path: one spare row and column of (zero) keys, masked out of the softmax."""
    m = mixer()
    u = torch.randn(2, *size, 32)
    spare = m.pool(u, spare=1)
    kh, kw = math.ceil(size[0] / 5), math.ceil(size[1] / 5)
    assert spare.shape == (2, kh + 1, kw + 1, 32)
    torch.testing.assert_close(spare[:, :kh, :kw], m.pool(u), atol=1e-6, rtol=0)
    assert (spare[:, kh:] == 0).all() and (spare[:, :, kw:] == 0).all()
    torch.testing.assert_close(m.attend(u, spare_keys=True).double(), naive_attention(m, u), atol=1e-5, rtol=0)
    torch.testing.assert_close(m.attend(u, spare_keys=True), m.attend(u, spare_keys=False), atol=1e-6, rtol=0)


def test_mixer_exports_with_a_single_key_at_export_time():
    """A side of at most pool_size gives one key row/column at export (stage 3 of a 64x96
    input): that size must stay symbolic, not be specialised (a constraint violation here)."""
    m = mixer().eval()
    dims = {1: torch.export.Dim("height", min=2, max=512), 2: torch.export.Dim("width", min=2, max=512)}
    program = torch.export.export(m, (torch.randn(2, 4, 4, 32),), dynamic_shapes={"u": dims})
    with torch.no_grad():
        for size in [(4, 4), (13, 9), (2, 31)]:
            u = torch.randn(2, *size, 32)
            torch.testing.assert_close(program.module()(u), m(u), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("export_size", [(4, 4), (13, 9)])
def test_mixer_onnx_runs_at_other_batch_and_sizes(export_size, tmp_path):
    """ONNX (dynamo) export with dynamic batch/H/W, run in onnxruntime at other batches and
    sizes. Exported at 4x4 (one key) the graph used to keep the key count at 1."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    m = mixer().eval()
    with torch.no_grad():
        m.norm.running_mean.normal_()
        m.norm.running_var.uniform_(0.5, 2.0)
    # min=4: the stage-3 map of a model's 64-pixel minimum input.
    dims = {0: torch.export.Dim("batch", max=64), 1: torch.export.Dim("height", min=4, max=512),
            2: torch.export.Dim("width", min=4, max=512)}
    program = torch.onnx.export(m, (torch.randn(2, *export_size, 32),), dynamic_shapes={"u": dims},
                                dynamo=True, verbose=False)
    path = tmp_path / "irmb.onnx"
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in [(1, 4, 4), (1, 13, 9), (3, 7, 9), (2, 25, 33), (1, 4, 17)]:
        u = torch.randn(*shape, 32)
        (out,) = session.run(None, {session.get_inputs()[0].name: u.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(out), m(u), atol=1e-5, rtol=1e-5)


# --- learnable resizer
RESIZES = [((37, 53), (64, 64)), ((64, 64), (33, 17)), ((20, 30), (20, 30))]


def perturb_head(r):
    with torch.no_grad():
        r.head.weight.normal_(std=0.05)
        r.head.bias.normal_(std=0.05)


@pytest.mark.parametrize("src, dst", RESIZES)
def test_fresh_resizer_is_exact_bilinear(src, dst):
    r = LearnableResizer()
    x = torch.randn(2, 3, *src)
    expected = F.interpolate(x, size=dst, mode="bilinear", align_corners=False)
    for mode in (r.train, r.eval):
        mode()
        y = r(x, dst)
        assert y.shape == (2, 3, *dst)
        torch.testing.assert_close(y, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("src, dst", RESIZES[:2])
def test_perturbed_resizer_differs_from_bilinear(src, dst):
    r = LearnableResizer()
    perturb_head(r)
    x = torch.randn(2, 3, *src)
    y = r(x, dst)
    assert y.shape == (2, 3, *dst)
    assert (y - F.interpolate(x, size=dst, mode="bilinear", align_corners=False)).abs().max() > 1e-3


def test_fresh_resizer_trains_its_last_conv():
    r = LearnableResizer().train()
    r(torch.randn(2, 3, 37, 53), (64, 64)).square().mean().backward()
    assert r.head.weight.grad.abs().sum() > 0
    assert r.head.bias.grad.abs().sum() > 0
    # The zero conv blocks the signal to everything before it, until it moves.
    for name, p in r.named_parameters():
        if not name.startswith("head."):
            assert p.grad is None or p.grad.abs().max() == 0, name


@pytest.mark.parametrize("num_residual", [1, 2])
def test_resizer_gradients_reach_every_parameter(num_residual):
    r = LearnableResizer(channels=3, hidden=8, num_residual=num_residual).train()
    perturb_head(r)
    r(torch.randn(2, 3, 37, 53), (24, 40)).square().mean().backward()
    for name, p in r.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_reset_to_identity_restores_exact_bilinear():
    r = LearnableResizer().eval()
    perturb_head(r)
    r.reset_to_identity()
    assert not r.head.weight.any() and not r.head.bias.any()
    x = torch.randn(2, 3, 37, 53)
    torch.testing.assert_close(r(x, (64, 64)), F.interpolate(x, size=(64, 64), mode="bilinear"), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name, count", [("segformer_b2_resizer_input", 1), ("segformer_b2_resizer_decoder", 3)])
def test_models_start_with_zero_resizer_heads(name, count):
    """The model's generic init (random convs) runs first; reset_to_identity must undo it."""
    model = sl.create_model(config=sl.get_config(name).with_stages(depth=1))
    resizers = [mod for mod in model.modules() if isinstance(mod, LearnableResizer)]
    assert len(resizers) == count
    for r in resizers:
        assert not r.head.weight.any() and not r.head.bias.any()
        assert r.stem[0].weight.any()  # the rest is initialised as usual


def test_resizer_other_channel_counts():
    r = LearnableResizer(channels=5, hidden=8, num_residual=0)
    perturb_head(r)
    assert r(torch.randn(1, 5, 9, 11), (16, 6)).shape == (1, 5, 16, 6)


class FixedSizeResizer(nn.Module):
    def __init__(self, resizer, size):
        super().__init__()
        self.resizer = resizer
        self.size = size

    def forward(self, x):
        return self.resizer(x, self.size)


@pytest.mark.parametrize("dst", [(32, 48), (8, 8)])
def test_resizer_exports_with_dynamic_height_and_width(dst):
    r = LearnableResizer(hidden=8)
    perturb_head(r)
    r.eval()
    wrapper = FixedSizeResizer(r, dst)
    dims = {2: torch.export.Dim("height", min=8, max=1024), 3: torch.export.Dim("width", min=8, max=1024)}
    program = torch.export.export(wrapper, (torch.randn(2, 3, 37, 53),), dynamic_shapes={"x": dims})
    x = torch.randn(2, 3, 20, 71)
    with torch.no_grad():
        y = program.module()(x)
        assert y.shape == (2, 3, *dst)
        torch.testing.assert_close(y, wrapper(x), atol=1e-5, rtol=1e-5)
