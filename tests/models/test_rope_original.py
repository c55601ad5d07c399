"""The SegFormer-with-RoPE seed's checkpoints load with the seed model's outputs.

Fixtures (tests/fixtures/seeds/rope/{axial,mixed}) were written by the seed's own code,
scripts/seed_fixtures/rope_seed.py: its save_pretrained directories (safetensors and
pytorch_model.bin), its bare state dict, and its logits on a fixed 64x64 input. Logits
are about 0.5 in spread; ours equal the seed's to float32 noise (1.6e-6 measured), so
``ATOL`` is 1e-5, and every check that could pass without RoPE sees a difference > 0.1.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import REPO, randomised
from segformer_lab.engine import resolve_config
from segformer_lab.models import SegmentationModel, create_model, load_weights
from segformer_lab.models.checkpoint import CheckpointError, load_model
from segformer_lab.models.checkpoint.architecture import config_from_hf
from segformer_lab.models.checkpoint.rope_original import split_frequencies, with_original_rope

FIXTURES = REPO / "tests" / "fixtures" / "seeds" / "rope"
FORMS = ("safetensors", "bin", "state_dict.pth")
ATOL = 1e-5
CLEARLY = 0.1  # a wrong model (no RoPE, other keys) is off by more than this
SEED_ROPE = {"key_positions": "pooled", "theta": 100.0}
T_XY = ["segformer.encoder.t_x_0", "segformer.encoder.t_x_1", "segformer.encoder.t_y_0", "segformer.encoder.t_y_1"]


def seed_outputs(variant: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixture's input (pixel values as the generator made them) and the seed's logits."""
    saved = load_file(FIXTURES / variant / "logits.safetensors")
    return (saved["image"].float() - 128) / 32, saved["logits"]


@torch.no_grad()
def max_error(model: torch.nn.Module, variant: str) -> float:
    x, expected = seed_outputs(variant)
    return (model.eval()(x) - expected).abs().max().item()


def plain_config():
    """The fixtures' SegFormer without RoPE, as their config.json describes it."""
    hf = json.loads((FIXTURES / "axial" / "safetensors" / "config.json").read_text())
    return config_from_hf({**hf, "model_type": "segformer"}, encoder_only=False, notes=[])


# --- item 1 + 2: every saved form loads with load_model and gives the seed's logits ----
@pytest.mark.parametrize("form", ["safetensors", "bin"])
@pytest.mark.parametrize("variant", ["axial", "mixed"])
def test_seed_directory_loads_with_the_seed_models_logits(variant, form, caplog):
    with caplog.at_level(logging.INFO, logger="segformer_lab"):
        model = load_model(FIXTURES / variant / form)
    assert "(segformer_with_rope format)" in caplog.text
    assert {s.pos_encoding for s in model.config.stages} == {variant}
    assert model.config.rope.key_positions == "pooled" and model.config.rope.theta == 100.0
    assert model.config.decoder.dropout_mode == "element"  # transformers' port, which the seed trained
    assert max_error(model, variant) < ATOL


def test_bare_mixed_state_dict_loads_as_mixed(caplog):
    with caplog.at_level(logging.INFO, logger="segformer_lab"):
        model = load_model(FIXTURES / "mixed" / "state_dict.pth")
    assert "(segformer_with_rope format)" in caplog.text and "seed's mixed RoPE" in caplog.text
    assert {s.pos_encoding for s in model.config.stages} == {"mixed"}
    assert model.config.rope.key_positions == "pooled"
    assert max_error(model, "mixed") < ATOL


def test_bare_axial_state_dict_warns_and_names_the_option_that_picks_it(caplog):
    path = FIXTURES / "axial" / "state_dict.pth"
    with caplog.at_level(logging.WARNING, logger="segformer_lab"):
        plain = load_model(path)
    assert "cannot tell it from the SegFormer-with-RoPE seed's axial model" in caplog.text
    assert "pos_encoding='axial'" in caplog.text and "'key_positions': 'pooled'" in caplog.text
    assert max_error(plain, "axial") > CLEARLY  # loaded as plain SegFormer: not the seed's model
    axial = create_model(config=plain_config().with_stages(pos_encoding="axial"), rope=SEED_ROPE, pretrained=path)
    assert max_error(axial, "axial") < ATOL


def test_bare_axial_state_dict_of_a_registered_size_names_the_registry_entry(tmp_path, caplog):
    path = tmp_path / "b0.pth"
    torch.save({f"segformer.{k}" if k.startswith("encoder.") else k: v
                for k, v in create_model("segformer_b0", num_classes=5).state_dict().items()}, path)
    with caplog.at_level(logging.WARNING, logger="segformer_lab"):
        load_model(path)
    assert "create_model('segformer_b0_rope_axial', rope={'key_positions': 'pooled', 'theta': 100}" in caplog.text


@pytest.mark.parametrize("variant", ["axial", "mixed"])
def test_without_rope_or_with_centre_keys_the_logits_clearly_differ(variant):
    """What the parity tests rule out: the same weights in the wrong model."""
    seed = with_original_rope(plain_config(), mixed=variant == "mixed")
    weights = FIXTURES / variant / "state_dict.pth"
    centre = create_model(config=seed, rope={"key_positions": "centre"}, pretrained=weights)
    assert max_error(centre, variant) > CLEARLY
    plain = SegmentationModel(plain_config())
    if variant == "axial":
        load_weights(plain, weights)  # a bare axial file fits plain SegFormer ...
        assert max_error(plain, "axial") > CLEARLY  # ... and is not the seed's model
    else:
        with pytest.raises(CheckpointError, match="not in the model: encoder.block.0.0.attention.self.rope.freqs"):
            load_weights(plain, weights)


# --- create_model(..., pretrained=seed directory) -----------------------------------
@pytest.mark.parametrize("variant", ["axial", "mixed"])
def test_create_model_reads_a_seed_directory_and_reports_each_key(variant):
    config = with_original_rope(plain_config(), mixed=variant == "mixed")
    model = SegmentationModel(config)
    report = load_weights(model, FIXTURES / variant / "bin")
    assert report.format == "segformer_with_rope"
    assert max_error(model, variant) < ATOL
    if variant == "mixed":
        assert sorted(report.unused) == T_XY
        assert any(n.startswith("unused: the seed's position tables") for n in report.notes)
        assert any(n.startswith("converted: mixed RoPE frequencies") and "encoder.freqs.0" in n for n in report.notes)
    else:
        assert report.unused == [] and report.missing == []


@pytest.mark.parametrize("variant", ["axial", "mixed"])
def test_a_seed_directory_never_loads_into_a_model_without_rope(variant):
    with pytest.raises(CheckpointError, match=f"SegFormer-with-RoPE seed model \\({variant} RoPE\\)"):
        create_model(config=plain_config(), pretrained=FIXTURES / variant / "safetensors")


def test_a_seed_directory_in_a_model_with_other_rope_says_outputs_differ(caplog):
    config = with_original_rope(plain_config(), mixed=True).replace(rope={"key_positions": "centre"})
    with caplog.at_level(logging.WARNING, logger="segformer_lab"):
        create_model(config=config, pretrained=FIXTURES / "mixed" / "safetensors")
    assert "is not the seed's" in caplog.text


# --- the mixed frequencies: stacked per stage over heads -------------------------------
def test_stage_frequencies_split_per_block_by_the_configs_heads():
    blocks = [torch.randn(2, 3, 4) for _ in range(2)]  # (2, heads, head_dim/2) per block
    stacked = torch.stack(blocks, dim=1).view(2, 2, -1)  # the seed's layout
    split = split_frequencies("encoder.freqs.1", stacked, heads=(1, 3))
    assert list(split) == [f"encoder.block.1.{j}.attention.self.rope.freqs" for j in range(2)]
    for j, block in enumerate(blocks):
        assert torch.equal(split[f"encoder.block.1.{j}.attention.self.rope.freqs"], block)
    with pytest.raises(CheckpointError, match="encoder.freqs.1 has shape \\(2, 2, 12\\): stage 1 has 5 heads"):
        split_frequencies("encoder.freqs.1", stacked, heads=(1, 5))


def test_a_seed_directory_with_other_heads_than_mits_loads_by_its_config(tmp_path):
    hf = {
        "model_type": "segformer-with-rope", "rope_mixed": True, "rope_theta": 100.0, "image_size": 64,
        "num_encoder_blocks": 2, "hidden_sizes": [8, 16], "depths": [2, 1], "num_attention_heads": [2, 4],
        "sr_ratios": [4, 2], "patch_sizes": [7, 3], "strides": [4, 2], "mlp_ratios": [2, 2],
        "decoder_hidden_size": 16, "num_labels": 3,
    }
    ours = randomised(SegmentationModel(config_from_hf(hf, encoder_only=False, notes=[])), scale=0.3).eval()
    state = {}
    for key, value in ours.state_dict().items():  # written in the seed's spelling
        if key.endswith(".rope.freqs"):
            stage = int(key.split(".")[2])
            depth = ours.config.stages[stage].depth
            state[f"segformer.encoder.freqs.{stage}"] = torch.stack(
                [ours.state_dict()[f"encoder.block.{stage}.{j}.attention.self.rope.freqs"] for j in range(depth)], 1
            ).flatten(2)
        else:
            state[f"segformer.{key}" if key.startswith("encoder.") else key] = value
    (tmp_path / "seed").mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "seed" / "model.safetensors")
    (tmp_path / "seed" / "config.json").write_text(json.dumps(hf))
    loaded = load_model(tmp_path / "seed")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), ours(x))


# --- item 3: the recipe rebuilds the seed's models ------------------------------------
@pytest.mark.parametrize("variant", ["axial", "mixed"])
def test_rope_seed_recipe_builds_the_seeds_model(variant):
    config = resolve_config(REPO / "configs" / "rope_seed.yaml", [f"model.name=segformer_b0_rope_{variant}"])
    model = config["model"]
    recipe = create_model(model["name"], num_classes=model["num_classes"], **model["overrides"]).config
    # what load_model makes of the config.json the seed saves for its B0 (transformers' defaults)
    seed = config_from_hf({"model_type": "segformer-with-rope", "rope_mixed": variant == "mixed", "num_labels": 150},
                          encoder_only=False, notes=[])
    assert recipe.stages == seed.stages and recipe.rope == seed.rope and recipe.decoder == seed.decoder
    assert recipe.rope.key_positions == "pooled" and recipe.rope.theta == 100.0
