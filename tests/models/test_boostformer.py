"""BoostFormer and the components the ablation study composes: exact sizes, the
published operators, config validation, export."""

import math

import pytest
import torch
from torch.nn import functional as F

import segformer_lab as sl
from segformer_lab.layers import (
    Attention,
    MixCFN,
    PooledSelfAttention,
    PoolingMixer,
    PoolPatchEmbed,
    adaptive_avg_pool2d,
    build_rope,
    rotate_pairs,
)
from segformer_lab.analysis.profiling import profile_model


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_boostformer_b2_parameters_equal_the_seed_model_part_by_part():
    model = sl.create_model("boostformer_b2")
    assert count(model) == 17_576_602
    assert [count(m) for m in model.encoder.patch_embeddings] == [384, 8_576, 41_920, 165_376]
    assert [count(m) for m in model.encoder.block] == [117_312, 574_976, 6_954_240, 8_807_424]
    assert count(model.decode_head) == 906_394
    # thop, which the seed used, does not count the 1,412 layer scales and stage weights
    gains = sum(p.numel() for n, p in model.named_parameters() if "layer_scale" in n or "stage_weights" in n)
    assert count(model) - gains == 17_575_190


def test_boostformer_b2_macs_match_the_seed():
    profile = profile_model("boostformer_b2", (512, 512))
    assert abs(profile.published.total / 15.7e9 - 1) < 0.02


def test_boostformer_structure():
    model = sl.create_model("boostformer_b2")
    stage1, stage3 = model.encoder.block[0][0], model.encoder.block[2][0]
    assert isinstance(stage1.attention, PoolingMixer) and not stage1.pre_norm
    assert isinstance(stage1.layer_norm_1, torch.nn.BatchNorm2d)
    assert torch.allclose(stage1.layer_scale_1.gamma, torch.full((64,), 1e-5))
    assert isinstance(stage3.attention.self, PooledSelfAttention) and stage3.attention.output is None
    assert isinstance(stage3.mlp, MixCFN) and isinstance(stage3.layer_norm_2, torch.nn.LayerNorm)
    assert all(isinstance(n, torch.nn.Identity) for n in model.encoder.layer_norm)
    assert not hasattr(model.decode_head, "linear_fuse")


# --- components
@pytest.mark.parametrize("size,grid", [(16, 7), (13, 7), (7, 7), (5, 7), (1, 3)])
def test_exportable_adaptive_pooling_equals_torch(size, grid):
    x = torch.randn(2, 3, size, size + 4)
    torch.testing.assert_close(adaptive_avg_pool2d(x, grid), F.adaptive_avg_pool2d(x, grid))


def test_pooled_attention_equals_explicit_computation():
    attn = PooledSelfAttention(32, 2, grid=3).eval()
    x = torch.randn(2, 10, 7, 32)
    with torch.no_grad():
        pooled = F.adaptive_avg_pool2d(x.permute(0, 3, 1, 2), 3).permute(0, 2, 3, 1)
        kv = F.gelu(attn.layer_norm(pooled))
        q, k, v = attn.split_heads(attn.query(x)), attn.split_heads(attn.key(kv)), attn.split_heads(attn.value(kv))
        logits = q @ k.transpose(-1, -2) / math.sqrt(16)
        expected = (logits.softmax(-1) @ v).transpose(1, 2).reshape(2, 10, 7, 32)
        torch.testing.assert_close(attn(x), expected)


@pytest.mark.parametrize("pooling", ["adaptive", "average"])
def test_rope_in_pooled_attention_places_keys_at_cell_centres(pooling):
    """Keys of pooled attention rotate by the centre of the cell they average."""
    h, w, grid, sr = 11, 9, 4, 3
    rope = build_rope("axial", 16, 2)
    attn = PooledSelfAttention(32, 2, pooling=pooling, grid=grid, sr_ratio=sr, rope=rope).eval()
    x = torch.randn(1, h, w, 32)

    def centres(n):
        if pooling == "adaptive":
            return [(math.floor(i * n / grid) + math.ceil((i + 1) * n / grid) - 1) / 2 for i in range(grid)]
        return [(i * sr + min(i * sr + sr, n) - 1) / 2 for i in range(math.ceil(n / sr))]

    t_y, t_x = (c.flatten() for c in torch.meshgrid(torch.tensor(centres(h)), torch.tensor(centres(w)), indexing="ij"))
    f = 1.0 / 100.0 ** (torch.arange(0, 16, 4).float() / 16)
    angle_k = torch.cat([torch.outer(t_x, f), torch.outer(t_y, f)], dim=-1)
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    angle_q = torch.cat([torch.outer(xs.flatten(), f), torch.outer(ys.flatten(), f)], dim=-1)
    with torch.no_grad():
        kv = attn.reduce(x)
        q, k, v = attn.split_heads(attn.query(x)), attn.split_heads(attn.key(kv)), attn.split_heads(attn.value(kv))
        q, k = rotate_pairs(q, angle_q.cos(), angle_q.sin()), rotate_pairs(k, angle_k.cos(), angle_k.sin())
        expected = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, h, w, 32)
        torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_pooling_mixer_subtracts_the_input():
    x = torch.randn(1, 6, 5, 4)
    expected = F.avg_pool2d(x.permute(0, 3, 1, 2), 3, 1, 1, count_include_pad=False).permute(0, 2, 3, 1) - x
    torch.testing.assert_close(PoolingMixer()(x), expected)
    assert PoolingMixer()(torch.ones(1, 5, 7, 3)).abs().max() < 1e-6  # a flat map has no neighbourhood signal


def test_pooling_patch_embedding_commutes_with_projection():
    """Pooling then the 1x1 projection = the 1x1 projection then pooling (both linear,
    padding not counted), the published order."""
    embed = PoolPatchEmbed(3, 8, patch_size=7, stride=4).eval()
    x = torch.randn(1, 3, 37, 50)
    projected = F.conv2d(x, embed.proj.weight[:, :, None, None], embed.proj.bias)
    pooled = F.avg_pool2d(projected, 7, 4, 3, count_include_pad=False).permute(0, 2, 3, 1)
    out = embed(x)
    assert out.shape == (1, 10, 13, 8)
    torch.testing.assert_close(out, embed.layer_norm(pooled), atol=1e-5, rtol=1e-5)


def test_mix_cfn_splits_kernels_and_counts():
    cfn = MixCFN(64, 256)
    assert cfn.mixconv.conv3.kernel_size == (3, 3) and cfn.mixconv.conv5.kernel_size == (5, 5)
    assert cfn.mixconv.conv3.in_channels == cfn.mixconv.conv5.in_channels == 128
    assert count(cfn) == 38_720
    assert cfn(torch.randn(2, 9, 7, 64)).shape == (2, 9, 7, 64)


def test_attention_without_output_projection_has_no_parameters_for_it():
    core = PooledSelfAttention(32, 2)
    assert count(Attention(core, 32, output_projection=True)) - count(Attention(core, 32, False)) == 32 * 32 + 32


@pytest.mark.parametrize("name", ["boostformer_b0", "segformer_b0"])
def test_folded_head_equals_published(name):
    config = sl.get_config(name, num_classes=5).with_stages(depth=1)
    if name == "segformer_b0":
        config = config.replace(decoder={"type": "weighted_sum"})
    folded = sl.create_model(config=config)
    published = sl.create_model(config=config.replace(decoder={"fold": False}))
    with torch.no_grad():
        folded.decode_head.stage_weights.uniform_(0.5, 2.0)
        folded.decode_head.batch_norm.running_var.uniform_(0.5, 2.0)
    published.load_state_dict(folded.state_dict())
    x = torch.randn(2, 3, 65, 47)
    for train in (False, True):
        folded.train(train), published.train(train)
        torch.manual_seed(1)
        a = folded(x)
        torch.manual_seed(1)
        b = published(x)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    a.sum().backward(), b.sum().backward()
    torch.testing.assert_close(folded.decode_head.stage_weights.grad, published.decode_head.stage_weights.grad,
                               atol=1e-3, rtol=1e-4)


def test_rope_variant_adds_mixed_frequencies_in_attention_stages_only():
    plain, mixed = sl.create_model("boostformer_b0"), sl.create_model("boostformer_b0_rope_mixed")
    stages = sl.get_config("boostformer_b0").stages
    assert count(mixed) - count(plain) == sum(s.depth * s.width for s in stages[2:])
    assert [s.pos_encoding for s in sl.get_config("boostformer_b0_rope_axial").stages] == ["none", "none", "axial", "axial"]


def test_plain_checkpoint_initialises_the_rope_variant(tmp_path):
    sl.create_model("boostformer_b0").save_pretrained(tmp_path)
    model = sl.create_model("boostformer_b0_rope_mixed", pretrained=tmp_path)
    assert isinstance(model, sl.SegmentationModel)


# --- validation
@pytest.mark.parametrize(
    "change,message",
    [
        (dict(mixer="pooling", pos_encoding="mixed"), "keys sit on a spatial grid"),
        (dict(mixer="xca", pos_encoding="axial"), "xca has none"),
        (dict(deformable_blocks=[(), (), (5,), ()]), r"deformable_blocks \[5\]"),
        (dict(depth=[1, 2, 3]), "3 values for 4 stages"),
        (dict(mixer="attention"), "mixer 'attention' is unknown"),
        (dict(kv_grid=0), "kv_grid must be >= 1"),
        (dict(norm="instance"), "norm 'instance' is unknown"),
    ],
)
def test_invalid_combinations_are_rejected_at_build_time(change, message):
    with pytest.raises(sl.ConfigError, match=message):
        sl.get_config("segformer_b0").with_stages(**change)


def test_widths_and_depths_of_different_lengths_are_rejected():
    with pytest.raises(sl.ConfigError, match="4 widths, 3 depths"):
        sl.mit_stages((32, 64, 160, 256), (2, 2, 2))


def test_rope_with_deformable_blocks_is_rejected():
    config = sl.get_config("segformer_b2_deformable")
    with pytest.raises(sl.ConfigError, match="deformable has none"):
        config.with_stages(pos_encoding="axial")


def test_ablation_presets_round_trip_through_json():
    for name in sl.list_models("*b2_*") + sl.list_models("boostformer*"):
        config = sl.get_config(name)
        assert sl.ModelConfig.from_json(config.to_json()) == config, name




def test_deformable_offsets_start_at_zero_in_a_model():
    """The model's generic init must not overwrite the zero start of the offsets."""
    model = sl.create_model("segformer_b2_deformable")
    offsets = [m.offset.proj.weight for m in model.modules() if hasattr(m, "offset")]
    assert len(offsets) == 4 and all(torch.count_nonzero(w) == 0 for w in offsets)


def test_mix_cfn_folds_its_batch_norms_in_eval_exactly():
    cfn = MixCFN(32, 128)
    with torch.no_grad():
        for bn in (cfn.norm1, cfn.norm2):
            bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5), bn.bias.normal_()
    x = torch.randn(2, 13, 9, 32)
    cfn.eval()
    with torch.no_grad():
        folded = cfn(x)
        literal = cfn.dense2(cfn.act(cfn.norm2(cfn.mixconv(cfn.norm1(cfn.dense1(x))))))
    torch.testing.assert_close(folded, literal, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (13, 7), (3, 10)])
def test_exportable_ceil_pooling_equals_torch(size):
    from segformer_lab.layers.pooling import ceil_avg_pool2d

    x = torch.randn(2, 3, *size)
    torch.testing.assert_close(ceil_avg_pool2d(x, 4), F.avg_pool2d(x, 4, 4, ceil_mode=True))
