"""The BoostFormer seed's checkpoints load with no option and give its logits.

The fixtures under tests/fixtures/seeds/boost were written by the seed's own code
(scripts/seed_fixtures/boost_seed.py): its ``save_pretrained`` directories (safetensors
and pytorch_model.bin), a bare ``torch.save(model.state_dict())`` file, the seed
model's logits on fixed images of an even and an odd size, and the keys and shapes of
its real B2.
"""

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import segformer_lab as sl
from helpers import REPO
from segformer_lab.data.io import IMAGENET_MEAN, IMAGENET_STD
from segformer_lab.models.checkpoint import CheckpointError, load_weights, reading
from segformer_lab.models.checkpoint.architecture import segmentation_config
from segformer_lab.models.checkpoint.convert import convert
from segformer_lab.models.segmentation_model import SegmentationModel

FIXTURES = REPO / "tests/fixtures/seeds/boost"
# float32 noise: the seed's logits and ours differ by at most 1.7e-6 on the fixtures
# (|logits| < 3) and 4.9e-6 for the real B2 at 512 px (|logits| < 5.2); one wrong tensor
# anywhere moves them by more than 100 times this
TOLERANCE = 2e-5
B2_DIRECTORY = "SEGFORMER_LAB_BOOST_SEED_B2"  # the generator's --b2 output (not committed)
TINY_FORMS = ["tiny/model", "tiny/state_dict.pth"]


def pixel_values(image: torch.Tensor) -> torch.Tensor:
    """The generator's normalisation of its uint8 images, the same expression."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image.float() / 255 - mean) / std


@torch.no_grad()
def differences(model: torch.nn.Module, case: Path) -> dict[str, float]:
    """Per image size, the largest difference between ``model``'s logits and the seed's."""
    expected = load_file(case / "expected.safetensors")
    result = {}
    for name, image in expected.items():
        if name.startswith("image."):
            seed = expected[name.replace("image.", "logits.")]
            ours = model.eval()(pixel_values(image))
            assert ours.shape == seed.shape
            result[name.removeprefix("image.")] = (ours - seed).abs().max().item()
    return result


@pytest.mark.parametrize("form", [*TINY_FORMS, "heads/model_bin"])
def test_load_model_gives_the_seed_logits_at_an_even_and_an_odd_size(form):
    path = FIXTURES / form
    model = sl.load_model(path)
    found = differences(model, path.parent)
    print(f"{form}: largest difference per size {found}")
    assert len(found) == 2 and any(int(n) % 2 for size in found for n in size.split("x"))
    assert max(found.values()) < TOLERANCE, found


def test_the_config_json_says_what_the_weights_cannot():
    """Three stages, the last at stride 1, heads, MLP ratios, first patch size and
    classes that no default has: only config.json knows them."""
    config = sl.load_model(FIXTURES / "heads/model_bin").config
    assert [(s.width, s.depth, s.num_heads, s.mlp_ratio, s.patch_size, s.stride) for s in config.stages] == [
        (8, 1, 2, 2.0, 5, 4),
        (12, 1, 3, 3.0, 3, 2),
        (16, 2, 4, 2.0, 3, 1),
    ]
    assert (config.num_classes, config.decoder.width, config.decoder.type) == (3, 16, "weighted_sum")
    assert [s.mixer for s in config.stages] == ["pooling", "pooling", "pooled"]
    # the same weights with other heads are another model: the heads were read, not guessed
    other_heads = SegmentationModel(config.with_stages(num_heads=1))
    load_weights(other_heads, FIXTURES / "heads/model_bin")
    assert max(differences(other_heads, FIXTURES / "heads").values()) > 100 * TOLERANCE


def test_a_bare_state_dict_says_what_it_assumed(caplog):
    model = sl.load_model(FIXTURES / "tiny/state_dict.pth")
    assert [(s.width, s.depth, s.mlp_ratio) for s in model.config.stages] == [
        (8, 1, 2.0),
        (16, 2, 2.0),
        (20, 1, 2.0),
        (24, 1, 2.0),
    ]
    assert "attention heads [1, 2, 5, 8], patch sizes [7, 3, 3, 3], strides [4, 2, 2, 2]" in caplog.text
    assert "create_model(config=..., pretrained=path)" in caplog.text


def test_a_pretraining_state_dict_gives_the_encoder_and_a_fresh_head(tmp_path, caplog):
    """The seed's pretraining is its SegformerForImageClassification (encoder keys as in
    the segmentation model, plus ``classifier``); its train.py fine-tunes from the state
    dict it extracts with ``torch.save(checkpoint["model"])``."""
    state = torch.load(FIXTURES / "tiny/state_dict.pth", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("decode_head.")}
    state |= {"classifier.weight": torch.ones(200, 24), "classifier.bias": torch.ones(200)}
    torch.save(state, tmp_path / "pretrained_state_dict.pth")
    model = sl.load_model(tmp_path / "pretrained_state_dict.pth")
    assert (model.config.num_classes, model.config.decoder.width) == (150, 768)
    assert "encoder-only checkpoint: the segmentation head gets 150 classes" in caplog.text
    seed = sl.load_model(FIXTURES / "tiny/model").encoder.state_dict()
    assert all(torch.equal(v, seed[k]) for k, v in model.encoder.state_dict().items())


@pytest.mark.parametrize("form", TINY_FORMS)
def test_the_load_report_names_the_format_and_what_was_dropped_or_converted(form):
    model = SegmentationModel(sl.load_model(FIXTURES / "tiny/model").config)
    report = load_weights(model, FIXTURES / form)
    assert report.format == "boostformer_seed"
    assert report.unused == ["decode_head.linear_fuse.weight"] and report.missing == []
    notes = "\n".join(report.notes)
    assert "the seed's decode head builds linear_fuse but its forward never calls it" in notes
    assert "converted: the seed's 1x1 convolutions are Linear layers here: " in notes
    assert "converted: the seed's decode_head.weights (stages, 1) is one vector: decode_head.stage_weights" in notes


@pytest.mark.parametrize("form", TINY_FORMS)
def test_create_model_with_the_registry_layout_takes_the_seed_weights(form):
    """``boostformer_b2``'s layout at the fixture's sizes, from the registry, not from
    the checkpoint: the seed's weights fit it and give its logits."""
    config = (
        sl.get_config("boostformer_b2", num_classes=5)
        .with_stages(width=[8, 16, 20, 24], depth=[1, 2, 1, 1], mlp_ratio=2.0)
        .replace(decoder={"width": 16})
    )
    model = sl.create_model(config=config, pretrained=FIXTURES / form)
    assert max(differences(model, FIXTURES / "tiny").values()) < TOLERANCE


def wrong_mixconv_biases(model):
    mixconv = model.encoder.block[1][1].mlp.mixconv  # a conv_3 / conv_5 mix-up that loads
    mixconv.conv3.bias[:], mixconv.conv5.bias[:] = mixconv.conv5.bias.clone(), mixconv.conv3.bias.clone()


WRONG = {
    "layer scale 1% off": lambda m: m.encoder.block[1][1].layer_scale_2.gamma.mul_(1.01),
    "MixConv halves swapped": wrong_mixconv_biases,
    "decoder stage weights at their init": lambda m: m.decode_head.stage_weights.fill_(1.0),
    "BatchNorm statistics at their init": lambda m: m.encoder.block[0][0].mlp.norm1.reset_running_stats(),
    "attention norm at its init": lambda m: m.encoder.block[3][0].attention.self.layer_norm.reset_parameters(),
}


@pytest.mark.parametrize("wrong", WRONG)
def test_the_comparison_fails_on_a_wrong_tensor(wrong):
    model = sl.load_model(FIXTURES / "tiny/model")
    with torch.no_grad():
        WRONG[wrong](model)
    assert max(differences(model, FIXTURES / "tiny").values()) > 100 * TOLERANCE


def seed_b2_directory(tmp_path: Path) -> Path:
    """The seed's real B2 as its ``save_pretrained(safe_serialization=False)`` lays it
    out: its config.json and every key and shape (zeros, one stored number each: only
    the layout is checked)."""
    layout = json.loads(gzip.decompress((FIXTURES / "b2_layout.json.gz").read_bytes()))
    (tmp_path / "config.json").write_text(json.dumps(layout["config"]))
    state = {
        k: torch.zeros((), dtype=torch.long if k.endswith("num_batches_tracked") else torch.float32).expand(shape)
        for k, shape in layout["shapes"].items()
    }
    assert state["decode_head.linear_fuse.weight"].numel() == 2_359_296
    torch.save(state, tmp_path / "pytorch_model.bin")
    return tmp_path


def test_the_seed_b2_is_boostformer_b2(tmp_path):
    directory = seed_b2_directory(tmp_path)
    config = sl.load_model(directory).config
    assert config.name == "boostformer_b2" and config.num_classes == 150
    assert config.decoder.dropout_mode == "element"  # the seed's nn.Dropout
    # its bare state dict, without config.json (the config only: a B2 takes seconds to build)
    source = reading.read(directory / "pytorch_model.bin")
    assert segmentation_config(source, convert(source)[0], []) == config
    report = load_weights(sl.create_model("boostformer_b2"), directory / "pytorch_model.bin")
    assert report.unused == ["decode_head.linear_fuse.weight"] and report.missing == []


def test_config_errors_name_the_file_and_the_entry(tmp_path):
    shutil.copytree(FIXTURES / "tiny/model", tmp_path / "model")
    config = json.loads((tmp_path / "model/config.json").read_text())
    (tmp_path / "model/config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(CheckpointError, match=r"model/config.json: hidden_act 'relu' is not supported"):
        sl.load_model(tmp_path / "model")


def test_a_tensor_that_is_no_1x1_convolution_is_named_with_both_shapes(tmp_path):
    state = torch.load(FIXTURES / "tiny/state_dict.pth", weights_only=True)
    state["segformer.encoder.patch_embeddings.0.conv.weight"] = torch.zeros(8, 3, 7, 7)
    torch.save(state, tmp_path / "seed.pth")
    with pytest.raises(CheckpointError, match=r"encoder.patch_embeddings.0.proj.weight has shape \(8, 3, 7, 7\)"):
        sl.load_model(tmp_path / "seed.pth")


@pytest.mark.skipif(B2_DIRECTORY not in os.environ, reason=f"{B2_DIRECTORY}: the generator's --b2 output")
@pytest.mark.parametrize("form", ["model", "state_dict.pth"])
def test_seed_b2_at_512_gives_the_seed_logits(form):
    directory = Path(os.environ[B2_DIRECTORY])
    model = sl.load_model(directory / form)
    found = differences(model, directory)
    print(f"{form}: largest difference per size {found}")
    assert model.config.name == "boostformer_b2" and max(found.values()) < TOLERANCE
