"""Parameter and MAC counts against the figures measured on transformers' SegFormer."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import segformer_lab as sl
from segformer_lab.cli import main
from segformer_lab.analysis.profiling import (
    SDPA_CPU,
    count_macs,
    count_params,
    profile_model,
    resolve_models,
    sdpa_flops,
)

# reference/numbers.md: transformers 5.23, 150 classes, 1x3x512x512.
PARAMS = {
    "segformer_b0": (3_752_694, 3_319_392),
    "segformer_b1": (13_715_798, 13_151_424),
    "segformer_b2": (27_461_974, 24_196_288),
    "segformer_b3": (47_337_814, 44_072_128),
    "segformer_b4": (64_108_374, 60_842_688),
    "segformer_b5": (84_708_694, 81_443_008),
}
# FlopCounterMode on transformers' default (SDPA) model, which does not count the CPU
# attention kernel: our published count without attention must agree.
TRANSFORMERS_SDPA_GMACS = {"segformer_b0": 7.35, "segformer_b2": 58.45}


@pytest.fixture(scope="module")
def profiles_512():
    return {name: profile_model(name) for name in TRANSFORMERS_SDPA_GMACS}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name):
    total, encoder = PARAMS[name]
    assert count_params(sl.get_config(name)) == (total, encoder, total - encoder)


def test_profile_reports_parameter_counts(profiles_512):
    prof = profiles_512["segformer_b2"]
    total, encoder = PARAMS["segformer_b2"]
    assert (prof.params, prof.encoder_params, prof.decoder_params, prof.num_classes) == (
        total,
        encoder,
        total - encoder,
        150,
    )


@pytest.mark.parametrize("name", sorted(TRANSFORMERS_SDPA_GMACS))
def test_published_macs_match_transformers(profiles_512, name):
    pub = profiles_512[name].published
    assert (pub.total - pub.attention) / 1e9 == pytest.approx(TRANSFORMERS_SDPA_GMACS[name], rel=5e-3)


@pytest.mark.parametrize("name", sorted(TRANSFORMERS_SDPA_GMACS))
def test_attention_matches_its_formula(profiles_512, name):
    """2 * N * M * C per block (QK^T and AV; heads * head_dim = C), M = N / sr^2."""
    expected, side = 0, 512
    for stage in sl.get_config(name).stages:
        side //= stage.stride
        queries = side * side
        keys = (side // stage.sr_ratio) ** 2
        expected += stage.depth * 2 * queries * keys * stage.width
    assert profiles_512[name].published.attention == expected
    assert profiles_512[name].executed.attention == expected


def test_parts_add_up_and_folding_only_changes_the_decoder(profiles_512):
    prof = profiles_512["segformer_b2"]
    for cost in (prof.published, prof.executed):
        assert sum(cost.stages) + cost.decoder == cost.total
    assert prof.executed.stages == prof.published.stages
    # Folding drops linear_fuse (numbers.md: ~38.7 GMACs) and adds the per-forward
    # product of each stage's linear_fuse slice with its projection (D x D x C_i).
    linear_fuse = 128 * 128 * (4 * 768) * 768
    folding = 768 * 768 * sum(sl.get_config("segformer_b2").widths)
    assert prof.executed.decoder == prof.published.decoder - linear_fuse + folding
    assert prof.to_dict()["published"]["flops"]["total"] == 2 * prof.published.total


def test_fake_count_equals_a_real_cpu_run():
    """The count runs on fake tensors; it must see the same ops as a real forward pass."""
    config = sl.get_config("segformer_b0")
    model = sl.create_model(config=config).eval()
    counter = FlopCounterMode(display=False, custom_mapping={SDPA_CPU: sdpa_flops})
    with torch.no_grad(), counter:
        model(torch.randn(1, 3, 96, 64))
    cost = count_macs(config, (96, 64))
    assert cost.total == counter.get_total_flops() // 2
    assert cost.attention == counter.get_flop_counts()["Global"][SDPA_CPU] // 2 > 0


def test_published_count_equals_transformers_eager_count():
    """transformers' eager attention computes QK^T and AV with matmuls, which
    FlopCounterMode counts: that model's full count is our published count."""
    transformers = pytest.importorskip("transformers")
    from segformer_lab.models.checkpoint import to_hf_config

    config = sl.get_config("segformer_b0")
    hf_config = transformers.SegformerConfig(**to_hf_config(config))
    hf_model = transformers.SegformerForSemanticSegmentation._from_config(hf_config, attn_implementation="eager")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        hf_model.eval()(torch.randn(1, 3, 128, 128))
    assert count_macs(config.replace(decoder={"fold": False}), (128, 128)).total == counter.get_total_flops() // 2


def test_config_and_class_override():
    config = sl.get_config("segformer_b0", num_classes=19)
    assert profile_model(config, size=(64, 64)).num_classes == 19
    prof = profile_model("segformer_b0", size=(64, 64), num_classes=19)
    assert prof.params == PARAMS["segformer_b0"][0] - (150 - 19) * (256 + 1)


def test_resolve_models():
    assert resolve_models(["all"]) == sl.list_models()
    assert resolve_models(["segformer_b1", "segformer_b[01]"]) == ["segformer_b1", "segformer_b0"]
    with pytest.raises(KeyError, match="no registered model"):
        resolve_models(["resnet*"])
    with pytest.raises(KeyError, match="did you mean"):
        resolve_models(["segformer_b9"])


def test_cli_json(capsys):
    assert main(["profile", "segformer_b0", "--size", "64", "64", "--json"]) == 0
    [prof] = json.loads(capsys.readouterr().out)
    assert prof["name"] == "segformer_b0" and prof["size"] == [64, 64]
    assert prof["params"]["total"] == PARAMS["segformer_b0"][0]
    for variant in ("published", "executed"):
        macs, flops = prof[variant]["macs"], prof[variant]["flops"]
        assert len(macs["stages"]) == 4 and flops["decoder"] == 2 * macs["decoder"]


def test_cli_table_with_detail(capsys):
    assert main(["profile", "segformer_b0", "--size", "64", "64", "--detail"]) == 0
    out = capsys.readouterr().out
    assert "3,752,694" in out and "  stage 4" in out and "  decoder" in out


def test_cli_unknown_model(capsys):
    assert main(["profile", "segformer_b9"]) == 2
    assert "did you mean" in capsys.readouterr().err
