"""XCA (XCiT) and separable self-attention (MobileViTv2) token mixers: shapes, gradients,
references written here from the papers' equations, linear cost, exportability."""

import pytest
import torch
from torch.export import Dim
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from segformer_lab.layers.attention import AttentionOutput
from segformer_lab.layers.separable import SeparableSelfAttention
from segformer_lab.layers.xca import CrossCovarianceAttention

MIXERS = {
    "xca": lambda dim, proj: CrossCovarianceAttention(dim, 4, output_projection=proj),
    "separable": lambda dim, proj: SeparableSelfAttention(dim, 4, output_projection=proj),
    "separable_sr2": lambda dim, proj: SeparableSelfAttention(dim, 4, sr_ratio=2, output_projection=proj),
}


# --- references, written from the equations in the papers
def reference_xca(m: CrossCovarianceAttention, x):
    b, h, w, c = x.shape
    heads, d = m.num_heads, c // m.num_heads
    qkv = x.reshape(b, h * w, c) @ m.qkv.weight.t()
    q, k, v = (t.reshape(b, h * w, heads, d) for t in qkv.split(c, dim=-1))  # [B, N, heads, d]
    q_hat = q / q.norm(dim=1, keepdim=True)  # L2 over the N tokens
    k_hat = k / k.norm(dim=1, keepdim=True)
    attn = torch.einsum("bnhi,bnhj->bhij", q_hat, k_hat) * m.temperature[None, :, None, None]
    attn = attn.softmax(dim=-1)  # [B, heads, d, d]
    out = torch.einsum("bhij,bnhj->bnhi", attn, v).reshape(b, h, w, c)
    if m.output is not None:
        out = out @ m.output.dense.weight.t() + m.output.dense.bias
    return out, attn


def reference_separable(m: SeparableSelfAttention, x):
    b, h, w, c = x.shape
    src = x
    if m.sr_ratio > 1:
        src = F.conv2d(x.permute(0, 3, 1, 2), m.sr.weight, m.sr.bias, stride=m.sr_ratio).permute(0, 2, 3, 1)
        src = F.layer_norm(src, (c,), m.layer_norm.weight, m.layer_norm.bias, m.layer_norm.eps)
    tokens = src.reshape(b, -1, c)
    out = torch.empty_like(x)
    for i in range(b):
        logits = tokens[i] @ m.score.weight[0]  # [N']
        s = torch.exp(logits - logits.max())
        s = s / s.sum()
        context = torch.zeros(c, dtype=x.dtype)
        for n in range(tokens.shape[1]):
            context = context + s[n] * (m.key.weight @ tokens[i, n] + m.key.bias)
        values = torch.relu(x[i] @ m.value.weight.t() + m.value.bias)  # [H, W, C]
        out[i] = values * context
    if m.output is not None:
        out = out @ m.output.dense.weight.t() + m.output.dense.bias
    return out


# --- shared behaviour
@pytest.mark.parametrize("name", MIXERS)
@pytest.mark.parametrize("hw", [(7, 9), (13, 5), (16, 16)])
def test_output_shape(name, hw):
    m = MIXERS[name](32, True)
    x = torch.randn(2, *hw, 32)
    assert m(x).shape == x.shape


@pytest.mark.parametrize("name", MIXERS)
@pytest.mark.parametrize("proj", [True, False])
def test_gradients_reach_every_parameter(name, proj):
    m = MIXERS[name](32, proj)
    x = torch.randn(2, 7, 9, 32)
    (m(x) * torch.randn(2, 7, 9, 32)).sum().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MIXERS)
def test_output_projection_switch(name):
    with_proj, without = MIXERS[name](32, True), MIXERS[name](32, False)
    assert isinstance(with_proj.output, AttentionOutput)
    assert not any(n.startswith("output.") for n, _ in without.named_parameters())
    extra = sum(p.numel() for p in with_proj.parameters()) - sum(p.numel() for p in without.parameters())
    assert extra == 32 * 32 + 32


@pytest.mark.parametrize("name", MIXERS)
def test_export_dynamic_height_width(name):
    m = MIXERS[name](32, True).eval()
    h, w = Dim("h", min=4), Dim("w", min=4)
    ep = torch.export.export(m, (torch.randn(2, 8, 10, 32),), dynamic_shapes=({1: h, 2: w},))
    x = torch.randn(2, 13, 7, 32)
    torch.testing.assert_close(ep.module()(x), m(x), atol=1e-5, rtol=1e-5)


# --- XCA
@pytest.mark.parametrize("proj", [True, False])
def test_xca_matches_einsum_reference(proj):
    m = CrossCovarianceAttention(32, 4, output_projection=proj).double()
    with torch.no_grad():
        m.temperature.copy_(torch.rand(4) * 2 + 0.5)
    x = torch.randn(2, 7, 9, 32, dtype=torch.float64)
    out, attn = reference_xca(m, x)
    torch.testing.assert_close(m(x), out)
    torch.testing.assert_close(m.attention_map(x), attn)


def test_xca_attention_rows_sum_to_one():
    m = CrossCovarianceAttention(64, 4)
    attn = m.attention_map(torch.randn(2, 13, 5, 64))
    assert attn.shape == (2, 4, 16, 16)
    assert (attn >= 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 4, 16))


def test_xca_temperature_is_per_head_vector_and_matters():
    m = CrossCovarianceAttention(32, 4)
    assert m.temperature.ndim == 1 and m.temperature.shape == (4,)
    assert torch.equal(m.temperature.detach(), torch.ones(4))
    x = torch.randn(2, 7, 9, 32)
    with torch.no_grad():
        before = m(x)
        m.temperature.fill_(5.0)
        after = m(x)
    assert not torch.allclose(before, after, atol=1e-4)


def count_flops(m, x):
    with FlopCounterMode(display=False) as counter:
        m(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("proj", [True, False])
def test_xca_cost_is_linear_in_tokens(proj):
    m = CrossCovarianceAttention(32, 4, output_projection=proj)
    small = count_flops(m, torch.randn(1, 8, 8, 32))
    large = count_flops(m, torch.randn(1, 16, 16, 32))  # 4x the tokens
    assert small > 0
    assert 3.9 <= large / small <= 4.1


# --- separable self-attention
@pytest.mark.parametrize("sr_ratio", [1, 2])
@pytest.mark.parametrize("proj", [True, False])
def test_separable_matches_loop_reference(sr_ratio, proj):
    m = SeparableSelfAttention(32, sr_ratio=sr_ratio, output_projection=proj).double()
    x = torch.randn(2, 7, 9, 32, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference_separable(m, x))


@pytest.mark.parametrize("sr_ratio, hw, n_scores", [(1, (7, 9), 63), (2, (13, 9), 6 * 4), (1, (16, 16), 256)])
def test_separable_scores_are_a_convex_combination(sr_ratio, hw, n_scores):
    m = SeparableSelfAttention(32, sr_ratio=sr_ratio)
    x = torch.randn(2, *hw, 32)
    s = m.context_scores(x)
    assert s.shape == (2, n_scores)
    assert (s >= 0).all()
    torch.testing.assert_close(s.sum(-1), torch.ones(2))
    # regression: a softmax over a size-1 axis gives all ones / all equal scores
    assert (s.std(-1) > 1e-4).all()
    assert not torch.allclose(s, torch.full_like(s, 1.0 / n_scores), atol=1e-5)


def test_separable_sr2_at_odd_sizes():
    m = SeparableSelfAttention(32, sr_ratio=2)
    x = torch.randn(2, 13, 9, 32)
    assert m(x).shape == (2, 13, 9, 32)


def test_separable_ignores_num_heads():
    a = SeparableSelfAttention(32, num_heads=1)
    b = SeparableSelfAttention(32, num_heads=8)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 7, 9, 32)
    torch.testing.assert_close(a(x), b(x))


def test_separable_cost_is_linear_in_tokens():
    m = SeparableSelfAttention(32)
    small = count_flops(m, torch.randn(1, 8, 8, 32))
    large = count_flops(m, torch.randn(1, 16, 16, 32))
    assert 3.9 <= large / small <= 4.1
