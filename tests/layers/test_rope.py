"""2-D rotary position embeddings: equal to rope-vit's complex formulation, relative,
exact under sequence reduction, any resolution, float32 angles, exportable."""

import math
import warnings

import pytest
import torch
from torch.nn import functional as F

import segformer_lab as sl
from helpers import REPO
from segformer_lab.layers import AxialRoPE, EfficientSelfAttention, MixedRoPE, build_rope, rotate_pairs
from segformer_lab.layers.rope import grid_coordinates


# --- small complex-number references, written here from the rope-vit paper's equations
def complex_rotate(x, angles):
    """x * exp(i angles), with channel pairs (2j, 2j+1) as complex numbers."""
    xc = torch.view_as_complex(x.double().unflatten(-1, (-1, 2)).contiguous())
    return torch.view_as_real(xc * torch.polar(torch.ones_like(angles.double()), angles.double())).flatten(-2)


def reference_positions(h, w):
    t = torch.arange(h * w, dtype=torch.float64)
    return t % w, torch.div(t, w, rounding_mode="floor")  # (t_x, t_y), row-major tokens


def reference_axial_angles(head_dim, h, w, theta):
    f = 1.0 / theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].double() / head_dim)
    t_x, t_y = reference_positions(h, w)
    return torch.cat([torch.outer(t_x, f), torch.outer(t_y, f)], dim=-1)  # [N, d/2]


def reference_mixed_angles(freqs, h, w):
    t_x, t_y = reference_positions(h, w)
    f = freqs.double()
    return t_x[None, :, None] * f[0][:, None] + t_y[None, :, None] * f[1][:, None]  # [heads, N, d/2]


def test_rotate_pairs_equals_complex_multiplication():
    x = torch.randn(2, 3, 10, 8)
    angles = torch.randn(3, 10, 4) * 10
    out = rotate_pairs(x, angles.cos(), angles.sin())
    torch.testing.assert_close(out.double(), complex_rotate(x, angles), atol=1e-5, rtol=0)


@pytest.mark.parametrize("theta", [100.0, 10.0])
def test_axial_rotation_equals_rope_vit(theta):
    h, w, d = 5, 7, 16
    rope = AxialRoPE(d, theta=theta)
    q, k = torch.randn(2, 3, h * w, d), torch.randn(2, 3, h * w, d)
    q_rot, k_rot = rope(q, k, (h, w))
    angles = reference_axial_angles(d, h, w, theta)
    torch.testing.assert_close(q_rot.double(), complex_rotate(q, angles), atol=1e-5, rtol=0)
    torch.testing.assert_close(k_rot.double(), complex_rotate(k, angles), atol=1e-5, rtol=0)


def test_mixed_rotation_equals_rope_vit():
    h, w, d, heads = 6, 4, 32, 3
    rope = MixedRoPE(d, heads)
    q, k = torch.randn(2, heads, h * w, d), torch.randn(2, heads, h * w, d)
    q_rot, _ = rope(q, k, (h, w))
    angles = reference_mixed_angles(rope.freqs.detach(), h, w)
    torch.testing.assert_close(q_rot.double(), complex_rotate(q, angles), atol=1e-5, rtol=0)


def test_mixed_initialisation_follows_rope_vit():
    d, heads, theta = 32, 4, 10.0
    freqs = MixedRoPE(d, heads, theta=theta).freqs.detach()
    assert freqs.shape == (2, heads, d // 2)
    magnitude = 1.0 / theta ** (torch.arange(0, d, 4)[: d // 4].float() / d)
    lengths = freqs.norm(dim=0)  # |(f_x, f_y)| per head and pair
    torch.testing.assert_close(lengths, magnitude.repeat(2).expand(heads, -1))
    direction = torch.atan2(freqs[1], freqs[0])  # per head: a for the first d/4 pairs, a + pi/2 after
    first, second = direction[:, : d // 4], direction[:, d // 4 :]
    assert torch.allclose(first, first[:, :1].expand_as(first), atol=1e-5)
    turn = torch.remainder(second - first, 2 * math.pi)
    torch.testing.assert_close(turn, torch.full_like(turn, math.pi / 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_logits_depend_on_relative_position_only(kind):
    """With sr = 1: constant q and k everywhere, so any change of q_p . k_q with (p, q)
    at fixed p - q would come from absolute positions."""
    h, w, d, heads = 6, 7, 16, 2
    rope = build_rope(kind, d, heads)
    q = torch.randn(1, heads, 1, d).expand(1, heads, h * w, d)
    k = torch.randn(1, heads, 1, d).expand(1, heads, h * w, d)
    q_rot, k_rot = rope(q, k, (h, w))
    logits = (q_rot @ k_rot.transpose(-1, -2)).view(heads, h, w, h, w)
    for dy, dx in [(1, 0), (0, 1), (2, 3)]:
        shifted = logits[:, dy:, dx:, dy:, dx:]
        original = logits[:, : h - dy, : w - dx, : h - dy, : w - dx]
        torch.testing.assert_close(shifted, original, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_rotation_preserves_norms(kind):
    rope = build_rope(kind, 32, 4)
    q, k = torch.randn(1, 4, 35, 32), torch.randn(1, 4, 35, 32)
    q_rot, k_rot = rope(q, k, (5, 7))
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1))
    torch.testing.assert_close(k_rot.norm(dim=-1), k.norm(dim=-1))


@pytest.mark.parametrize("kind", ["axial", "mixed"])
@pytest.mark.parametrize("sr, h, w", [(2, 9, 13), (4, 17, 10), (8, 16, 24)])
def test_centre_keys_sit_at_window_centres(kind, sr, h, w):
    """sr x sr windows of a strided reduction: key j is at sr*j + (sr-1)/2; trailing rows
    and columns that no window covers (as in the strided conv) are dropped."""
    d, heads = 16, 2
    rope = build_rope(kind, d, heads)
    reduce = lambda t: F.avg_pool2d(t, sr, sr)  # noqa: E731
    hk, wk = h // sr, w // sr
    cos_q, sin_q, cos_k, sin_k = rope.tables(h, w, reduce, torch.device("cpu"))
    ys = (torch.arange(hk) * sr + (sr - 1) / 2).double()
    xs = (torch.arange(wk) * sr + (sr - 1) / 2).double()
    t_y, t_x = (c.flatten() for c in torch.meshgrid(ys, xs, indexing="ij"))
    if kind == "axial":
        f = 1.0 / 100.0 ** (torch.arange(0, d, 4)[: d // 4].double() / d)
        expected = torch.cat([torch.outer(t_x, f), torch.outer(t_y, f)], dim=-1)[None]
    else:
        f = rope.freqs.detach().double()
        expected = t_x[None, :, None] * f[0][:, None] + t_y[None, :, None] * f[1][:, None]
    torch.testing.assert_close(cos_k.double(), expected.cos(), atol=1e-5, rtol=0)
    torch.testing.assert_close(sin_k.double(), expected.sin(), atol=1e-5, rtol=0)
    assert cos_q.shape[-2] == h * w


def test_centre_keys_of_uneven_windows():
    """Any window-averaging reduction works, e.g. adaptive pooling with uneven windows:
    each key sits at the mean of its window's positions, (start + end - 1) / 2."""
    rope = AxialRoPE(8)
    h, w, out = 7, 10, (3, 4)
    _, _, cos_k, _ = rope.tables(h, w, lambda t: F.adaptive_avg_pool2d(t, out), torch.device("cpu"))

    def centres(n, m):
        return torch.tensor([(math.floor(i * n / m) + math.ceil((i + 1) * n / m) - 1) / 2 for i in range(m)])

    t_y, t_x = (c.flatten() for c in torch.meshgrid(centres(h, out[0]), centres(w, out[1]), indexing="ij"))
    f = 1.0 / 100.0 ** (torch.arange(0, 8, 4)[:2].double() / 8)
    expected = torch.cat([torch.outer(t_x.double(), f), torch.outer(t_y.double(), f)], dim=-1)
    torch.testing.assert_close(cos_k[0].double(), expected.cos(), atol=1e-5, rtol=0)


def test_pooled_keys_average_the_rotation_factors():
    """The seed's variant: a key gets the mean of its window's e^{i angle} (|.| < 1)."""
    sr, h, w, d, heads = 2, 6, 8, 16, 2
    rope = build_rope("mixed", d, heads, key_positions="pooled")
    q, k = torch.randn(1, heads, h * w, d), torch.randn(1, heads, (h // sr) * (w // sr), d)
    _, k_rot = rope(q, k, (h, w), lambda t: F.avg_pool2d(t, sr, sr))
    angles = reference_mixed_angles(rope.freqs.detach(), h, w)  # [heads, N, d/2]
    factors = torch.polar(torch.ones_like(angles), angles).view(heads, h, w, d // 2)
    pooled = factors.unflatten(1, (h // sr, sr)).unflatten(3, (w // sr, sr)).mean(dim=(2, 4)).flatten(1, 2)
    kc = torch.view_as_complex(k.double().unflatten(-1, (-1, 2)).contiguous())
    expected = torch.view_as_real(kc * pooled).flatten(-2)
    torch.testing.assert_close(k_rot.double(), expected, atol=1e-5, rtol=0)
    assert (pooled.abs() < 1).any()


def test_reference_grid_rescales_positions():
    coords = grid_coordinates(8, 4, torch.device("cpu"), reference=(16, 16))
    assert coords[0, -1, 0] == 7 * 2 and coords[1, 0, -1] == 3 * 4
    assert torch.equal(grid_coordinates(3, 2, torch.device("cpu"))[:, 2, 1], torch.tensor([2.0, 1.0]))


def test_angles_stay_float32_under_autocast():
    rope = AxialRoPE(32)
    q = torch.randn(1, 1, 64 * 64, 32, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tables = rope.tables(64, 64, None, torch.device("cpu"))
        q_rot, _ = rope(q, q, (64, 64))
    assert all(t.dtype == torch.float32 for t in tables)
    assert q_rot.dtype == torch.bfloat16
    expected = complex_rotate(q.float(), reference_axial_angles(32, 64, 64, 100.0))
    torch.testing.assert_close(q_rot.double(), expected, atol=0.05, rtol=0.02)


def test_tables_are_cached_per_shape_and_not_stored():
    rope = AxialRoPE(16)
    with torch.no_grad():
        a = rope.cached_tables(5, 6, None, torch.device("cpu"))
        assert rope.cached_tables(5, 6, None, torch.device("cpu")) is a
        assert rope.cached_tables(6, 5, None, torch.device("cpu")) is not a
    assert rope.state_dict() == {}


def test_mixed_tables_follow_parameter_updates():
    rope = MixedRoPE(16, 2)
    with torch.no_grad():
        before = rope.cached_tables(4, 4, None, torch.device("cpu"))[0].clone()
        rope.freqs.mul_(2)
        after = rope.cached_tables(4, 4, None, torch.device("cpu"))[0]
    assert not torch.allclose(before, after)


def test_attention_rotates_with_its_own_windows():
    """EfficientSelfAttention with RoPE = the same attention computed by hand."""
    torch.manual_seed(0)
    dim, heads, sr, h, w = 32, 2, 4, 9, 13
    attn = EfficientSelfAttention(dim, heads, sr, build_rope("axial", dim // heads, heads)).eval()
    x = torch.randn(1, h, w, dim)
    with torch.no_grad():
        kv = attn.reduce(x)
        q, k, v = attn.split_heads(attn.query(x)), attn.split_heads(attn.key(kv)), attn.split_heads(attn.value(kv))
        cos_q, sin_q, cos_k, sin_k = attn.rope.tables(h, w, lambda t: F.avg_pool2d(t, sr, sr), x.device)
        q, k = rotate_pairs(q, cos_q, sin_q), rotate_pairs(k, cos_k, sin_k)
        expected = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, h, w, dim)
        torch.testing.assert_close(attn(x), expected)


# --- models
def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("size", range(6))
def test_parameter_counts(size):
    plain = sl.get_config(f"segformer_b{size}")
    with torch.device("meta"):
        base = count(sl.create_model(f"segformer_b{size}"))
        axial = count(sl.create_model(f"segformer_b{size}_rope_axial"))
        mixed = count(sl.create_model(f"segformer_b{size}_rope_mixed"))
    assert axial == base
    assert mixed - base == sum(s.depth * s.num_heads * (s.width // s.num_heads) for s in plain.stages)


def test_state_dict_holds_no_tables():
    plain = set(sl.create_model("segformer_b0").state_dict())
    assert set(sl.create_model("segformer_b0_rope_axial").state_dict()) == plain
    extra = set(sl.create_model("segformer_b0_rope_mixed").state_dict()) - plain
    assert extra and all(k.endswith("attention.self.rope.freqs") for k in extra)


def test_rope_models_run_at_any_resolution():
    model = sl.create_model("segformer_b0_rope_mixed", num_classes=3).eval()
    with torch.no_grad():
        for size in [(256, 256), (512, 512), (333, 517)]:
            assert model(torch.randn(1, 3, *size)).shape[-2:] == (math.ceil(size[0] / 4), math.ceil(size[1] / 4))


def test_rope_settings_per_stage_and_in_config():
    config = sl.get_config("segformer_b0", rope={"key_positions": "pooled", "theta": 50.0})
    stages = [dict(s.__dict__, pos_encoding=p) for s, p in zip(config.stages, ["axial", "none", "mixed", "none"])]
    model = sl.create_model(config=config.replace(stages=stages))
    ropes = [blocks[0].attention.self.rope for blocks in model.encoder.block]
    assert isinstance(ropes[0], AxialRoPE) and ropes[1] is None and isinstance(ropes[2], MixedRoPE)
    assert ropes[0].theta == 50.0 and ropes[0].key_positions == "pooled"
    assert sl.ModelConfig.from_json(model.config.to_json()) == model.config


def test_rope_needs_head_dim_divisible_by_four():
    stages = [dict(width=36, depth=1, num_heads=6, sr_ratio=1, pos_encoding="axial")]
    with pytest.raises(sl.ConfigError, match="divisible by 4"):
        sl.create_model("segformer_b0", stages=stages)


def test_no_weight_decay_lists_mixed_frequencies():
    model = sl.create_model("segformer_b0_rope_mixed")
    names = model.no_weight_decay()
    freqs = {n for n, _ in model.named_parameters() if n.endswith("rope.freqs")}
    assert freqs and freqs <= names
    assert "encoder.block.0.0.attention.self.query.weight" not in names
    assert "encoder.block.0.0.attention.self.query.bias" in names


def test_rope_model_exports_to_onnx_and_runs_at_another_size(onnx_matches, shallow):
    """Mixed RoPE (learnable frequencies, centre keys of the reduced attention) exported at
    64x96 with dynamic axes, onnxruntime runs it at 97x130. Axial RoPE is exported by the
    model tester (``boostformer_b0_rope_axial``, float32, in pooled-KV attention) and by the fp16
    test (``segformer_b0_rope_axial``, checked at other sizes): one export each is what
    takes the time."""
    onnx_matches(sl.create_model(config=shallow(sl.get_config("segformer_b0_rope_mixed", num_classes=4))))


def test_plain_segformer_checkpoint_initialises_mixed_rope(tmp_path, caplog):
    """Only the mixed frequencies are missing; they keep their initialisation, and the
    loader says so."""
    plain = sl.create_model("segformer_b0")
    plain.save_pretrained(tmp_path)
    torch.manual_seed(3)
    fresh = sl.create_model("segformer_b0_rope_mixed")
    torch.manual_seed(3)
    with caplog.at_level("INFO"):
        model = sl.create_model("segformer_b0_rope_mixed", pretrained=tmp_path)
    state, fresh_state, plain_state = model.state_dict(), fresh.state_dict(), plain.state_dict()
    freqs = [k for k in state if k.endswith("rope.freqs")]
    assert len(freqs) == 8 and "optional" in caplog.text
    for key in state:
        expected = fresh_state[key] if key in freqs else plain_state[key]
        assert torch.equal(state[key], expected), key


def test_seed_style_complex_baseline_of_the_benchmark_matches(shallow):
    """benchmarks/rope_complex.py times a complex-number rotation against ours: it must
    compute the same logits (pooled keys), or the comparison would mean nothing."""
    import importlib.util

    path = REPO / "benchmarks" / "rope_complex.py"
    spec = importlib.util.spec_from_file_location("rope_complex", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = shallow(sl.get_config("segformer_b0_rope_mixed", num_classes=4, rope={"key_positions": "pooled"}))
    real = sl.create_model(config=config).eval()
    complex_ = sl.create_model(config=config).eval()
    complex_.load_state_dict(real.state_dict())
    module.with_complex_rope(complex_)
    x = torch.randn(1, 3, 70, 90)
    with torch.no_grad():
        torch.testing.assert_close(complex_(x), real(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layout", ["tokens-major", "odd strides"])
def test_eager_rotation_and_its_gradients_equal_the_real_form(layout):
    """Eager mode rotates with one complex product, tracers with real products (ONNX has
    no complex numbers): the same outputs and the same gradients, for the input and for
    the tables (mixed RoPE's frequencies learn through them), whatever ``x``'s strides."""
    x = torch.randn(2, 9, 3, 16).transpose(1, 2) if layout == "tokens-major" else torch.randn(2, 3, 9, 17)[..., 1:]
    angles = torch.randn(3, 9, 8)
    grad = torch.randn(2, 3, 9, 16)

    def real_form(x, cos, sin):
        x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)
        return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)

    def run(rotate):
        leaves = [t.detach().requires_grad_(True) for t in (x, angles.cos(), angles.sin())]
        out = rotate(*leaves)
        out.backward(grad)
        return out, [t.grad for t in leaves]

    (out, grads), (expected, expected_grads) = run(rotate_pairs), run(real_form)
    torch.testing.assert_close(out, expected)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e)


def test_half_precision_rotates_in_real_products():
    """There is no complex bfloat16: such inputs take the real form, in their own dtype."""
    x = torch.randn(2, 3, 9, 16)
    angles = torch.randn(3, 9, 8)
    out = rotate_pairs(x.bfloat16(), angles.cos().bfloat16(), angles.sin().bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), rotate_pairs(x, angles.cos(), angles.sin()), atol=0.05, rtol=0.02)


def test_rotation_keeps_the_layout_of_its_input():
    """With or without autograd, the rotated tensor is laid out like ``x`` (the attention
    kernel then sees the same layout as without RoPE), with the same numbers."""
    x = torch.randn(2, 50, 4, 16).transpose(1, 2)  # [B, heads, N, d], tokens-major like the attention's
    angles = torch.randn(1, 50, 8)
    expected = rotate_pairs(x, angles.cos(), angles.sin())
    with torch.inference_mode():
        fast = rotate_pairs(x, angles.cos(), angles.sin())
    torch.testing.assert_close(fast, expected)
    assert fast.stride() == x.stride()


@pytest.mark.parametrize("rope", [AxialRoPE(8), MixedRoPE(8, num_heads=2).requires_grad_(False)], ids=["axial", "mixed"])
def test_angles_trace_without_iterating_over_a_tensor(rope):
    """Tracing the angles raised ``TracerWarning: Iterating over a tensor`` at every RoPE
    export (issue 20, item 6): the rows and columns come out of one ``unbind``."""
    points = rope.points(3, 5, None, torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        traced = torch.jit.trace(lambda c: rope.angles(c), (points,), check_trace=False)
    torch.testing.assert_close(traced(points), rope.angles(points))
