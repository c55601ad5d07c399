"""Checkpoint loading: every supported format, its errors, and its safety guarantees.

All checkpoints are written into ``tmp_path`` by the tests themselves; no network.
"""

import json
import logging
import os
import pickle

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import nn

import segformer_lab as sl
from helpers import randomised
from segformer_lab.engine import SegmentationTask, load_for_eval, resolve_config
from segformer_lab.models import LoadReport, SegmentationModel, load_weights, mit_stages
from segformer_lab.models.checkpoint import KEY_FORMATS, reading, to_hf_config, to_hf_state_dict
from segformer_lab.models.checkpoint.formats import KeyFormat
from segformer_lab.models.factory import open_model
from segformer_lab.models.pretrained import MODEL_CONFIG_KEY

SIZE = 64


def tiny_config(**changes) -> sl.ModelConfig:
    """A MiT-shaped model small enough for fast tests; heads are MiT's, so its
    architecture can be inferred from the weights alone."""
    config = sl.ModelConfig(
        stages=mit_stages((16, 32, 40, 64), (1, 2, 1, 1)), decoder=sl.DecoderConfig(width=32), num_classes=5
    )
    return config.replace(**changes)


def tiny_model(**changes) -> SegmentationModel:
    return randomised(SegmentationModel(tiny_config(**changes))).eval()


@torch.no_grad()
def logits(model: nn.Module, seed: int = 1) -> torch.Tensor:
    x = torch.randn(2, model.config.in_channels, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))
    return model.eval()(x)


def assert_same_state(a: nn.Module, b: nn.Module, skip: str = "\0") -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if not k.startswith(skip):
            assert torch.equal(sa[k], sb[k]), k


def to_nvlabs(state: dict, prefix: str = "backbone.") -> dict:
    """Our keys -> the original NVlabs/mmseg spelling (key and value stacked into ``kv``)."""
    block_names = {
        "layer_norm_1": "norm1",
        "layer_norm_2": "norm2",
        "attention.self.query": "attn.q",
        "attention.self.sr": "attn.sr",
        "attention.self.layer_norm": "attn.norm",
        "attention.output.dense": "attn.proj",
        "mlp.dense1": "mlp.fc1",
        "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
        "mlp.dense2": "mlp.fc2",
    }
    head_names = {"linear_fuse": "linear_fuse.conv", "batch_norm": "linear_fuse.bn", "classifier": "linear_pred"}
    out = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if key.startswith("encoder.patch_embeddings."):
            sub = {"proj": "proj", "layer_norm": "norm"}[parts[3]]
            out[f"{prefix}patch_embed{int(parts[2]) + 1}.{sub}.{parts[4]}"] = tensor
        elif key.startswith("encoder.layer_norm."):
            out[f"{prefix}norm{int(parts[2]) + 1}.{parts[3]}"] = tensor
        elif key.startswith("encoder.block."):
            block = f"{prefix}block{int(parts[2]) + 1}.{parts[3]}"
            module, param = ".".join(parts[4:-1]), parts[-1]
            if module == "attention.self.key":
                value_key = key.replace(".key.", ".value.")
                out[f"{block}.attn.kv.{param}"] = torch.cat([tensor, state[value_key]])
            elif module != "attention.self.value":
                out[f"{block}.{block_names[module]}.{param}"] = tensor
        elif key.startswith("decode_head.linear_c."):
            out[f"decode_head.linear_c{int(parts[2]) + 1}.{'.'.join(parts[3:])}"] = tensor
        else:
            module, rest = parts[1], ".".join(parts[2:])
            out[f"decode_head.{head_names[module]}.{rest}"] = tensor
    return out


# --- this project's format ------------------------------------------------------------
def test_save_pretrained_round_trip_is_bit_exact(tmp_path):
    model = tiny_model(name="tiny")
    model.save_pretrained(tmp_path)
    loaded = sl.load_model(tmp_path)
    assert loaded.config == model.config
    assert not loaded.training
    assert_same_state(model, loaded)
    assert torch.equal(logits(model), logits(loaded))
    assert torch.equal(logits(SegmentationModel.from_pretrained(tmp_path)), logits(model))


def test_registered_model_round_trip(tmp_path):
    model = randomised(sl.create_model("segformer_b0", num_classes=3)).eval()
    model.save_pretrained(tmp_path)
    loaded = sl.load_model(tmp_path)
    assert loaded.config == model.config and loaded.config.name == "segformer_b0"
    assert_same_state(model, loaded)


# --- key spellings --------------------------------------------------------------------
def hf_legacy(state):
    return to_hf_state_dict(state)


def linear_projections(state):
    renamed = {k.replace("decode_head.linear_c.", "decode_head.linear_projections."): v for k, v in state.items()}
    return to_hf_state_dict(renamed)


def ddp_wrapped(state):
    return {"module." + k: v for k, v in state.items()}


@pytest.mark.parametrize(
    "spelling, expected_format",
    [
        (hf_legacy, "huggingface"),
        (linear_projections, "huggingface"),
        (ddp_wrapped, "segformer_lab"),
        (to_nvlabs, "nvlabs"),
    ],
)
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_key_spellings_load_exactly(tmp_path, spelling, expected_format, suffix):
    source = tiny_model()
    state = {k: v.contiguous() for k, v in spelling(source.state_dict()).items()}
    path = tmp_path / f"weights{suffix}"
    save_file(state, str(path)) if suffix == ".safetensors" else torch.save(state, path)

    target = SegmentationModel(tiny_config())
    report = load_weights(target, path)
    assert isinstance(report, LoadReport)
    assert report.format == expected_format
    assert report.missing == report.unused == report.reinitialised == []
    assert_same_state(source, target)


def test_transformers5_internal_names(tmp_path):
    transformers = pytest.importorskip("transformers")
    source = tiny_model()
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    save_file(to_hf_state_dict(source.state_dict()), str(hf_dir / "model.safetensors"))
    transformers.SegformerConfig(**to_hf_config(source.config)).save_pretrained(hf_dir)
    hf = transformers.SegformerForSemanticSegmentation.from_pretrained(hf_dir)
    internal = hf.state_dict()  # transformers 5's in-memory names: segformer.stages.N.blocks.M.attention.q_proj ...
    assert any(".stages.0.blocks.0.attention.q_proj." in k for k in internal)
    torch.save(internal, tmp_path / "internal.bin")

    target = SegmentationModel(tiny_config())
    report = load_weights(target, tmp_path / "internal.bin")
    assert report.format == "transformers5"
    assert report.missing == report.unused == []
    assert_same_state(source, target)


def test_hf_directory_with_pytorch_model_bin(tmp_path):
    source = tiny_model()
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "segformer", **to_hf_config(source.config)}))
    torch.save(to_hf_state_dict(source.state_dict()), tmp_path / "pytorch_model.bin")
    loaded = sl.load_model(tmp_path)
    assert loaded.config.stages == source.config.stages
    assert loaded.config.num_classes == 5
    assert torch.equal(logits(loaded), logits(source))


def test_directory_with_two_differing_weights_files_says_which_is_read(tmp_path, caplog):
    source, other = tiny_model(), randomised(SegmentationModel(tiny_config()), seed=7)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "segformer", **to_hf_config(source.config)}))
    save_file(to_hf_state_dict(source.state_dict()), str(tmp_path / "model.safetensors"))
    torch.save(to_hf_state_dict(source.state_dict()), tmp_path / "pytorch_model.bin")
    with caplog.at_level(logging.WARNING, logger="segformer_lab"):
        sl.load_model(tmp_path)
    assert "differ" not in caplog.text  # the same weights twice: nothing to say
    torch.save(to_hf_state_dict(other.state_dict()), tmp_path / "pytorch_model.bin")
    with caplog.at_level(logging.WARNING, logger="segformer_lab"):
        loaded = sl.load_model(tmp_path)
    assert "model.safetensors and pytorch_model.bin differ; reading model.safetensors" in caplog.text
    assert torch.equal(logits(loaded), logits(source))


def test_unknown_stage_field_names_the_file_and_field(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["stages"][1]["widht"] = 32
    (tmp_path / "config.json").write_text(json.dumps(config))
    for load in (sl.load_model, SegmentationModel.from_pretrained):
        with pytest.raises(sl.CheckpointError, match=rf"{tmp_path / 'config.json'}: unknown stage 1 field\(s\) "
                                                     r"\['widht'\]; valid fields: \[.*'width'"):
            load(tmp_path)


# --- encoder-only checkpoints ---------------------------------------------------------
def test_hf_classification_checkpoint_gets_fresh_decode_head(tmp_path, caplog):
    transformers = pytest.importorskip("transformers")
    config = tiny_config()
    hf_config = transformers.SegformerConfig(**{**to_hf_config(config), "num_labels": 10})
    transformers.SegformerForImageClassification(hf_config).save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))

    with caplog.at_level(logging.WARNING, logger="segformer_lab"):
        model = sl.load_model(tmp_path)
    assert model.config.num_classes == 150
    assert model.config.stages == config.stages
    assert "150 classes" in caplog.text and "decode head is freshly initialised" in caplog.text
    for key, value in model.state_dict().items():
        if key.startswith("encoder."):
            assert torch.equal(value, saved["segformer." + key]), key

    target = SegmentationModel(tiny_config(num_classes=150))
    report = load_weights(target, tmp_path)
    assert report.missing == [k for k in target.state_dict() if k.startswith("decode_head.")]
    assert report.unused == ["classifier.bias", "classifier.weight"]
    assert any("freshly initialised" in n for n in report.notes)


def test_nvlabs_imagenet_encoder_builds_registered_variant(tmp_path):
    source = randomised(sl.create_model("segformer_b0"))
    encoder = {k: v for k, v in source.state_dict().items() if k.startswith("encoder.")}
    state = to_nvlabs(encoder, prefix="")  # NVlabs' mit_b0.pth: bare keys plus an ImageNet head
    state.update({"head.weight": torch.randn(1000, 256), "head.bias": torch.randn(1000)})
    torch.save(state, tmp_path / "mit_b0.pth")

    model = sl.load_model(tmp_path / "mit_b0.pth")
    assert model.config.name == "segformer_b0"
    assert model.config.decoder.width == 256 and model.config.num_classes == 150
    assert_same_state(source, model, skip="decode_head.")


# --- NVlabs / mmseg -------------------------------------------------------------------
def test_mmseg_checkpoint_loads_with_identical_outputs(tmp_path):
    source = tiny_model()
    state = to_nvlabs(source.state_dict())
    state["decode_head.conv_seg.weight"] = torch.randn(5, 32, 1, 1)
    state["decode_head.conv_seg.bias"] = torch.randn(5)
    state["auxiliary_head.conv_seg.weight"] = torch.randn(5, 8, 1, 1)
    checkpoint = {
        "meta": {"CLASSES": ("a", "b", "c", "d", "e"), "iter": 160000, "config": "model = dict(...)"},
        "state_dict": state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 6e-5}]},
    }
    torch.save(checkpoint, tmp_path / "iter_160000.pth")

    model = sl.load_model(tmp_path / "iter_160000.pth")
    assert model.config.stages == source.config.stages
    assert model.config.decoder.width == 32 and model.config.num_classes == 5
    assert torch.equal(logits(model), logits(source))

    report = load_weights(SegmentationModel(tiny_config()), tmp_path / "iter_160000.pth")
    assert report.format == "nvlabs"
    assert sorted(report.unused) == [
        "auxiliary_head.conv_seg.weight",
        "decode_head.conv_seg.bias",
        "decode_head.conv_seg.weight",
    ]
    assert any("meta" in n and "optimizer" in n for n in report.notes)


def test_bare_file_config_inference(tmp_path):
    stages = [
        sl.StageConfig(width=16, depth=2, num_heads=1, sr_ratio=4, patch_size=7, stride=4, mlp_ratio=2.0),
        sl.StageConfig(width=32, depth=1, num_heads=2, sr_ratio=2, patch_size=3, stride=2, mlp_ratio=3.0),
        sl.StageConfig(width=40, depth=3, num_heads=5, sr_ratio=1, patch_size=3, stride=2, mlp_ratio=4.0),
    ]
    config = sl.ModelConfig(stages=stages, decoder=sl.DecoderConfig(width=24), num_classes=7, in_channels=4)
    source = randomised(SegmentationModel(config)).eval()
    save_file(source.state_dict(), str(tmp_path / "ours.safetensors"))
    torch.save(to_hf_state_dict(source.state_dict()), tmp_path / "hf.bin")
    for name in ("ours.safetensors", "hf.bin"):
        model = sl.load_model(tmp_path / name)
        assert model.config.stages == config.stages, name
        assert (model.config.decoder.width, model.config.num_classes, model.config.in_channels) == (24, 7, 4)
        assert torch.equal(logits(model), logits(source)), name


def test_registry_pretrained_accepts_any_format(tmp_path):
    source = tiny_model()
    torch.save({"state_dict": to_nvlabs(source.state_dict())}, tmp_path / "nv.pth")
    model = sl.create_model(config=tiny_config(), pretrained=tmp_path / "nv.pth")
    assert_same_state(source, model)


# --- refusals -------------------------------------------------------------------------
class Payload:
    """Unpickling this object calls ``os.mkdir(marker)``: a stand-in for arbitrary code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_pickle_needing_code_execution_is_refused(tmp_path):
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Payload(proof)))  # the payload is real: plain unpickling runs it
    assert proof.exists()

    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"encoder.layer_norm.0.weight": torch.ones(16), "payload": Payload(marker)}, path)
    for load in (sl.load_model, lambda p: load_weights(SegmentationModel(tiny_config()), p)):
        with pytest.raises(sl.CheckpointError, match="unsafe unpickling") as info:
            load(path)
        assert str(path) in str(info.value)
    assert not marker.exists()


def test_other_architecture_names_keys_and_shapes(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    wider = SegmentationModel(tiny_config(stages=mit_stages((32, 32, 40, 64), (1, 2, 1, 1))))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(sl.CheckpointError) as info:
        load_weights(wider, tmp_path)
    message = str(info.value)
    assert "another architecture" in message and str(tmp_path) in message
    assert (
        "encoder.patch_embeddings.0.proj.weight has shape (16, 3, 7, 7) in the checkpoint "
        "but (32, 3, 7, 7) in the model"
        in message
    )
    assert all(torch.equal(v, before[k]) for k, v in wider.state_dict().items())  # untouched

    deeper = SegmentationModel(tiny_config(stages=mit_stages((16, 32, 40, 64), (1, 3, 1, 1))))
    with pytest.raises(sl.CheckpointError, match=r"missing from the checkpoint: encoder\.block\.1\.2\."):
        load_weights(deeper, tmp_path)
    shallower = SegmentationModel(tiny_config(stages=mit_stages((16, 32, 40, 64), (1, 1, 1, 1))))
    with pytest.raises(sl.CheckpointError, match=r"not in the model: encoder\.block\.1\.1\."):
        load_weights(shallower, tmp_path)


def test_class_count_mismatch(tmp_path):
    source = tiny_model()
    source.save_pretrained(tmp_path)
    with pytest.raises(sl.CheckpointError, match=r"5 classes but the model has 7.*reset_classifier=True"):
        load_weights(SegmentationModel(tiny_config(num_classes=7)), tmp_path)

    target = SegmentationModel(tiny_config(num_classes=7))
    fresh_classifier = target.decode_head.classifier.weight.clone()
    report = load_weights(target, tmp_path, reset_classifier=True)
    assert report.reinitialised == ["decode_head.classifier.weight", "decode_head.classifier.bias"]
    assert torch.equal(target.decode_head.classifier.weight, fresh_classifier)
    assert_same_state(source.encoder, target.encoder)

    model = sl.create_model(config=tiny_config(), num_classes=7, pretrained=tmp_path, reset_classifier=True)
    assert model.decode_head.classifier.out_channels == 7
    assert torch.equal(model.decode_head.linear_fuse.weight, source.decode_head.linear_fuse.weight)


def test_optional_keys_declared_by_the_model(tmp_path):
    class Extra(nn.Module):
        optional_checkpoint_keys = ("scale",)

        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

    tiny_model().save_pretrained(tmp_path)
    model = SegmentationModel(tiny_config())
    model.encoder.extra = Extra()
    report = load_weights(model, tmp_path)
    assert report.missing == ["encoder.extra.scale"]

    Extra.optional_checkpoint_keys = ()
    with pytest.raises(sl.CheckpointError, match=r"missing from the checkpoint: encoder\.extra\.scale"):
        load_weights(model, tmp_path)


def test_corrupt_and_missing_files(tmp_path):
    source = tiny_model()
    save_file(source.state_dict(), str(tmp_path / "good.safetensors"))
    torch.save(source.state_dict(), tmp_path / "good.pth")
    for name in ("good.safetensors", "good.pth"):
        data = (tmp_path / name).read_bytes()
        broken = tmp_path / f"truncated_{name}"
        broken.write_bytes(data[: len(data) // 2])
        with pytest.raises(sl.CheckpointError, match="truncated or corrupt") as info:
            sl.load_model(broken)
        assert str(broken) in str(info.value)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(sl.CheckpointError, match="garbage.pt"):
        sl.load_model(garbage)

    with pytest.raises(FileNotFoundError, match="nowhere"):
        sl.load_model(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(sl.CheckpointError, match=f"{empty}.*holds no weights"):
        sl.load_model(empty)
    (tmp_path / "weights.txt").write_text("hello")
    with pytest.raises(sl.CheckpointError, match="unsupported weights file type"):
        sl.load_model(tmp_path / "weights.txt")


# --- from_pretrained: this project's format only ---------------------------------------
def test_from_pretrained_reads_only_what_save_pretrained_writes(tmp_path):
    source = tiny_model()
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "segformer", **to_hf_config(source.config)}))
    save_file(to_hf_state_dict(source.state_dict()), str(hf_dir / "model.safetensors"))
    with pytest.raises(sl.CheckpointError, match=r"hf.config\.json: not a SegmentationModel directory.*load_model"):
        SegmentationModel.from_pretrained(hf_dir)
    assert torch.equal(logits(sl.load_model(hf_dir)), logits(source))  # which load_model reads

    save_file(source.state_dict(), str(tmp_path / "bare.safetensors"))
    with pytest.raises(sl.CheckpointError, match=r"bare\.safetensors: not a SegmentationModel directory"):
        SegmentationModel.from_pretrained(tmp_path / "bare.safetensors")

    sl.ImageClassifier(tiny_config()).save_pretrained(tmp_path / "classifier")
    with pytest.raises(sl.CheckpointError, match=r"classifier.config\.json: a segformer-lab classification model"):
        SegmentationModel.from_pretrained(tmp_path / "classifier")
    source.save_pretrained(tmp_path / "segmentation")
    with pytest.raises(sl.CheckpointError, match="a segformer-lab segmentation model, not a classification one"):
        sl.ImageClassifier.from_pretrained(tmp_path / "segmentation")


# --- a key format is one entry ----------------------------------------------------------
def test_a_key_format_entry_carries_renames_splits_transforms_and_optional_keys(tmp_path, monkeypatch):
    def linear_from_1x1(key, conv_weight):
        return {key: conv_weight.flatten(1)}

    toy = KeyFormat(
        name="toy",
        signature=r"^toy\.",
        renames=((r"^toy\.", ""), (r"\.attention\.self\.q\.", ".attention.self.query.")),
        splits=((".attention.self.kv.", (".attention.self.key.", ".attention.self.value.")),),
        transforms=((r"\.mlp\.dense1\.weight$", linear_from_1x1, "toy 1x1 convolutions are Linear layers"),),
        ignored=((r"^toy\.extra\.", "a toy extra"),),
        optional=((r"^decode_head\.batch_norm\.", "toy heads have no norm"),),
    )
    monkeypatch.setattr(reading, "KEY_FORMATS", (toy, *KEY_FORMATS))
    source = tiny_model()
    state = {}
    for key, value in source.state_dict().items():
        if key.startswith("decode_head.batch_norm.") or ".attention.self.value." in key:
            continue
        if ".attention.self.key." in key:
            value = torch.cat([value, source.state_dict()[key.replace(".key.", ".value.")]])
            key = key.replace(".key.", ".kv.")
        if key.endswith(".mlp.dense1.weight"):
            value = value[:, :, None, None]
        state["toy." + key.replace(".attention.self.query.", ".attention.self.q.")] = value
    state["toy.extra.weight"] = torch.ones(3)
    torch.save(state, tmp_path / "toy.pth")

    target = SegmentationModel(tiny_config())
    norm = {k: v.clone() for k, v in target.decode_head.batch_norm.state_dict().items()}
    report = load_weights(target, tmp_path / "toy.pth")
    assert report.format == "toy" and report.unused == ["toy.extra.weight"]
    assert report.missing == [f"decode_head.batch_norm.{k}" for k in norm]
    assert any("not in toy checkpoints (toy heads have no norm)" in n for n in report.notes)
    assert any(n.startswith("converted: toy 1x1 convolutions are Linear layers: ") for n in report.notes)
    assert_same_state(source, target, skip="decode_head.batch_norm.")
    assert all(torch.equal(v, norm[k]) for k, v in target.decode_head.batch_norm.state_dict().items())


# --- open_model: whatever the user gives -------------------------------------------------
def lightning_checkpoint(model: nn.Module, with_config: bool = True) -> dict:
    """What Lightning writes for a run's module around ``model`` (weights under ``model.``),
    with the module's own additions (``on_save_checkpoint``) unless ``with_config`` is off."""
    checkpoint = {"pytorch-lightning_version": "2.5.0", "global_step": 3, "epoch": 0,
                  "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}
    SegmentationTask(model).on_save_checkpoint(checkpoint)
    if not with_config:
        del checkpoint[MODEL_CONFIG_KEY]
    return checkpoint


def boostformer_tiny() -> SegmentationModel:
    """A BoostFormer: its architecture cannot be inferred from the weights."""
    return randomised(SegmentationModel(sl.get_config("boostformer_b0", num_classes=4).with_stages(depth=1))).eval()


def test_open_model_takes_every_kind_of_source(tmp_path, caplog):
    source = tiny_model()
    given = source.train()
    assert open_model(given) is given and not given.training

    source.save_pretrained(tmp_path / "ours")
    hf_dir = tmp_path / "hf"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text(json.dumps({"model_type": "segformer", **to_hf_config(source.config)}))
    torch.save(to_hf_state_dict(source.state_dict()), hf_dir / "pytorch_model.bin")
    for path in (tmp_path / "ours", hf_dir):
        model = open_model(path, num_classes=5)
        assert not model.training and torch.equal(logits(model), logits(source)), path

    boost = boostformer_tiny()
    run = tmp_path / "run"
    boost.save_pretrained(run)  # a run directory: its best weights, plus what training leaves
    (run / "checkpoints").mkdir()
    torch.save(lightning_checkpoint(boost), run / "checkpoints" / "last.ckpt")
    for path in (run, run / "checkpoints" / "last.ckpt"):
        model = open_model(path)
        assert model.config == boost.config and torch.equal(logits(model), logits(boost)), path

    with caplog.at_level(logging.WARNING, logger="segformer_lab"):
        model = open_model("SegFormer-B0", num_classes=3)
    assert model.config.name == "segformer_b0" and model.config.num_classes == 3 and not model.training
    assert "a registered model with random weights (no checkpoint): its output is noise" in caplog.text

    with pytest.raises(FileNotFoundError, match=r"segformr_b0: no such checkpoint, and not a registered model name "
                                                r"\(unknown model 'segformr_b0'; did you mean segformer_b0"):
        open_model("segformr_b0")
    with pytest.raises(FileNotFoundError, match=r"not a registered model name$"):
        open_model(tmp_path / "nowhere.pth")
    with pytest.raises(ValueError, match="the model has 5 classes, not 7"):
        open_model(tmp_path / "ours", num_classes=7)


def test_run_checkpoint_carries_its_model_config(tmp_path):
    boost = boostformer_tiny()
    checkpoint = lightning_checkpoint(boost)
    torch.save(checkpoint, tmp_path / "last.ckpt")
    stored = torch.load(tmp_path / "last.ckpt", weights_only=True)[MODEL_CONFIG_KEY]  # plain types
    assert stored == json.loads(json.dumps(boost.pretrained_config()))
    report = load_weights(SegmentationModel(boost.config), tmp_path / "last.ckpt")
    assert report.format == "segformer_lab" and report.missing == report.unused == []
    assert any("'model.' prefix" in n for n in report.notes)
    assert not any(MODEL_CONFIG_KEY in n for n in report.notes)  # the config is not "ignored"


def test_checkpoint_from_before_the_config_was_stored(tmp_path):
    source = tiny_model()  # SegFormer: inferred from its weights, as before
    torch.save(lightning_checkpoint(source, with_config=False), tmp_path / "segformer.ckpt")
    assert torch.equal(logits(sl.load_model(tmp_path / "segformer.ckpt")), logits(source))

    torch.save(lightning_checkpoint(boostformer_tiny(), with_config=False), tmp_path / "boost.ckpt")
    with pytest.raises(sl.CheckpointError) as info:
        open_model(tmp_path / "boost.ckpt")
    message = str(info.value)
    assert str(tmp_path / "boost.ckpt") in message
    assert "Lightning checkpoint without the model config" in message and "'model_config'" in message


def test_load_for_eval_opens_a_run_checkpoint(tmp_path):
    boost = boostformer_tiny()
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    stages = boost.config.to_dict()["stages"]
    config = resolve_config({"model": {"name": "boostformer_b0", "num_classes": 4, "overrides": {"stages": stages}}})
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    torch.save(lightning_checkpoint(boost), run / "checkpoints" / "last.ckpt")
    model, recipe = load_for_eval(run / "checkpoints" / "last.ckpt")
    assert recipe.config == config and recipe.where == run / "config.yaml" and not model.training
    assert torch.equal(logits(model), logits(boost))
