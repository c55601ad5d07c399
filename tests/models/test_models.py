"""The model tester: every registered model goes through the same checks, and the image
classifier over a SegFormer and a BoostFormer encoder through the classifier's.

Models run with one block per stage (the ``shallow`` fixture): every component type of
the preset is still present, and some forty presets stay fast. Full-depth parameter
counts are checked by the profiler and preset tests. Presets that are the same model
once shallow (B2-B5 differ only in depth) are torch.exported once."""

import math

import pytest
import torch

import segformer_lab as sl
from helpers import shallow
from segformer_lab.layers.mixers import TOKEN_MIXERS

MODELS = sl.list_models()
CLASSIFIER_ENCODERS = ["segformer_b0", "boostformer_b0"]
NUM_CLASSES = 5
# Square and not, sides divisible by 32 and not, down to the 32-pixel minimum.
SIZES = [(64, 64), (65, 47), (32, 97)]


@pytest.fixture
def build(shallow):
    """``build(name, **overrides)``: the registered model, shallow, with small inputs
    wherever the preset fixes an input size."""

    def make(name, **overrides):
        config = shallow(sl.get_config(name, num_classes=NUM_CLASSES, **overrides))
        if config.input_resizer is not None:
            config = config.replace(input_resizer=(64, 64))
        return sl.create_model(config=config)

    return make


@torch.no_grad()
def move_off_identity(model):
    """Layers that start as an identity map (a zero last convolution) pass no gradient
    to their inner weights until they move; nudge them, as one optimiser step would."""
    for module in model.modules():
        if hasattr(module, "reset_to_identity"):
            for p in module.parameters():
                p.add_(0.01 * torch.randn_like(p))


def assert_every_parameter_learns(model, loss):
    """``loss.backward()`` reaches every parameter of ``model`` with a finite, non-zero gradient."""
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


def assert_same_model(model, restored, x):
    """``restored`` (read back from disk) has ``model``'s config, tensors and outputs."""
    assert restored.config == model.config
    state, restored_state = model.state_dict(), restored.state_dict()
    assert state.keys() == restored_state.keys()
    for key in state:
        assert torch.equal(state[key], restored_state[key]), key
    with torch.no_grad():
        assert torch.equal(model(x), restored(x))


@pytest.mark.parametrize("name", MODELS)
def test_forward_shapes_at_odd_sizes(name, build):
    model = build(name).eval()
    for h, w in SIZES:
        with torch.no_grad():
            logits = model(torch.randn(2, 3, h, w))
        assert logits.shape == (2, NUM_CLASSES, math.ceil(h / 4), math.ceil(w / 4)), (h, w)
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", MODELS)
def test_encoder_alone_returns_stage_maps(name, build):
    model = build(name).eval()
    with torch.no_grad():
        features = model.encoder(torch.randn(1, 3, 65, 47))
    assert [f.shape[1] for f in features] == list(model.config.widths)
    h, w = 65, 47
    for f, stage in zip(features, model.config.stages):
        h, w = math.ceil(h / stage.stride), math.ceil(w / stage.stride)
        assert f.shape[-2:] == (h, w)


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name, build):
    # No stochastic depth: a branch dropped for the whole batch would get no gradient.
    model = build(name, drop_path_rate=0.0).train()
    move_off_identity(model)
    logits = model(torch.randn(2, 3, 65, 47))
    target = torch.randint(0, NUM_CLASSES, logits.shape[:1] + logits.shape[2:])
    assert_every_parameter_learns(model, torch.nn.functional.cross_entropy(logits, target))


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name, tmp_path, build):
    model = build(name).eval()
    model.save_pretrained(tmp_path)
    restored = sl.load_model(tmp_path).eval()
    assert_same_model(model, restored, torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize("name", MODELS)
def test_eval_output_is_deterministic(name, build):
    model = build(name).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def distinct_when_shallow(names: list[str]) -> list[str]:
    """``names`` less those whose shallow model is one already listed (B2-B5 differ only
    in depth: shallow, segformer_b3, b4 and b5 are segformer_b2, and so are their RoPE
    variants): an export of the same graph again checks nothing new and takes 7-15 s."""
    first: dict[str, str] = {}
    for name in names:
        first.setdefault(repr(shallow(sl.get_config(name, num_classes=NUM_CLASSES)).replace(name="")), name)
    return list(first.values())


@pytest.mark.parametrize("name", distinct_when_shallow(MODELS))
def test_torch_export_with_dynamic_shapes(name, build):
    """Exported once with dynamic batch/height/width, the graph runs at another size."""
    model = build(name).eval()
    dims = {0: torch.export.Dim("batch", max=64), 2: torch.export.Dim("height", min=64, max=4096),
            3: torch.export.Dim("width", min=64, max=4096)}
    program = torch.export.export(model, (torch.randn(2, 3, 64, 96),), dynamic_shapes={"pixel_values": dims})
    x = torch.randn(1, 3, 97, 65)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)


def one_preset_per_mixer() -> list[str]:
    """Registered presets that together hold every entry of the mixer table, a learnable
    resizer in the decoder and RoPE on pooled keys: the presets ONNX export is run on.
    Chosen greedily, the preset holding most of what is not covered yet first (ties: name
    order), so that no export repeats what another one already covers (each takes 10-25 s)."""
    def features(config):
        held = {stage.mixer_of_block(b) for stage in config.stages for b in range(stage.depth)}
        if config.decoder.resizer:
            held.add("resizer")
        if any(s.mixer == "pooled" and s.pos_encoding != "none" for s in config.stages):
            held.add("rope on pooled keys")
        return held

    held = {name: features(sl.get_config(name)) for name in MODELS}
    wanted = set(TOKEN_MIXERS) | {"resizer", "rope on pooled keys"}
    missing = wanted - set().union(*held.values())
    assert not missing, f"no registered preset holds {sorted(missing)}"
    chosen = []
    while wanted:
        best = max(sorted(held), key=lambda name: len(held[name] & wanted))
        chosen.append(best)
        wanted -= held[best]
    return sorted(chosen)


@pytest.mark.parametrize("name", one_preset_per_mixer())
def test_onnx_export_of_one_preset_per_mixer(name, build, onnx_matches):
    """Exported to ONNX with dynamic shapes, run in onnxruntime at another size (every
    preset is torch.exported above; norms, FFNs, embeddings, heads and RoPE come with
    these presets and the RoPE tests)."""
    onnx_matches(build(name))


# --- the image classifier (encoder pre-training) over a SegFormer and a BoostFormer encoder
@pytest.fixture
def build_classifier(shallow):
    def make(name, **overrides):
        return sl.create_classifier(config=shallow(sl.get_config(name, num_classes=NUM_CLASSES, **overrides)))

    return make


@pytest.mark.parametrize("name", CLASSIFIER_ENCODERS)
def test_classifier_forward_at_odd_sizes(name, build_classifier):
    model = build_classifier(name).eval()
    for h, w in SIZES:
        with torch.no_grad():
            logits = model(torch.randn(2, 3, h, w))
        assert logits.shape == (2, NUM_CLASSES), (h, w)
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", CLASSIFIER_ENCODERS)
def test_classifier_backward_reaches_every_parameter(name, build_classifier):
    model = build_classifier(name, drop_path_rate=0.0).train()
    logits = model(torch.randn(2, 3, 65, 47))
    assert_every_parameter_learns(model, torch.nn.functional.cross_entropy(logits, torch.randint(0, NUM_CLASSES, (2,))))


@pytest.mark.parametrize("name", CLASSIFIER_ENCODERS)
def test_classifier_save_load_round_trip(name, tmp_path, build_classifier):
    model = build_classifier(name).eval()
    model.save_pretrained(tmp_path)
    restored = sl.ImageClassifier.from_pretrained(tmp_path)
    assert not restored.training
    assert_same_model(model, restored, torch.randn(1, 3, 48, 64))


def test_config_json_round_trip():
    config = sl.get_config("segformer_b2", num_classes=19)
    assert sl.ModelConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("size", [(31, 64), (64, 16)])
def test_too_small_input_is_rejected(size):
    model = sl.create_model("segformer_b0").eval()
    with pytest.raises(ValueError, match="too small"):
        model(torch.randn(1, 3, *size))


def test_wrong_channel_count_is_rejected():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        sl.create_model("segformer_b0")(torch.randn(1, 4, 64, 64))


def test_unknown_model_suggests_names():
    with pytest.raises(KeyError, match="did you mean segformer_b0"):
        sl.create_model("segformr_b0")


def test_model_names_accept_hub_spelling():
    assert sl.get_config("SegFormer-B2") == sl.get_config("segformer_b2")


def test_unknown_override_is_rejected():
    with pytest.raises(sl.ConfigError, match="num_clases"):
        sl.create_model("segformer_b0", num_clases=3)


def test_invalid_config_is_rejected():
    with pytest.raises(sl.ConfigError, match="not divisible"):
        sl.create_model("segformer_b0", stages=[dict(width=30, depth=1, num_heads=4, sr_ratio=1)])
