"""Saving back to transformers: ``save_transformers`` and ``segformer-lab export
--transformers`` write a directory that ``SegformerForSemanticSegmentation.from_pretrained``
opens with the same logits; what transformers cannot express is refused."""

import json

import pytest
import torch

import segformer_lab as sl
from helpers import randomised
from segformer_lab.cli import main
from segformer_lab.data import ADE20K_CLASSES
from segformer_lab.models import mit_stages
from segformer_lab.models.checkpoint import hf_export

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4  # as tests/models/test_parity.py


def tiny(num_classes: int = 5, **changes) -> sl.SegmentationModel:
    config = sl.ModelConfig(stages=mit_stages((16, 32, 40, 64), (1, 2, 1, 1)), decoder=sl.DecoderConfig(width=32),
                            num_classes=num_classes, **changes)  # fmt: skip
    return randomised(sl.SegmentationModel(config), scale=0.05).eval()


def open_in_transformers(directory) -> torch.nn.Module:
    hf, info = transformers.SegformerForSemanticSegmentation.from_pretrained(directory, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return hf.eval()


@torch.no_grad()
def max_difference(ours, hf, size=(67, 93)) -> float:
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    return (ours(x) - hf(pixel_values=x).logits).abs().max().item()


def test_plain_segformer_opens_in_transformers_with_the_same_logits(tmp_path):
    ours = tiny()
    assert sl.save_transformers(ours, tmp_path / "hf") == tmp_path / "hf"
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == ["config.json", "model.safetensors",
                                                                    "preprocessor_config.json"]
    hf = open_in_transformers(tmp_path / "hf")
    assert max_difference(ours, hf) < TOLERANCE
    assert hf.config.id2label == {k: f"class {k}" for k in range(5)} and hf.config.label2id["class 4"] == 4
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "segformer" and config["architectures"] == ["SegformerForSemanticSegmentation"]

    back = sl.load_model(tmp_path / "hf")  # and read back here, bit for bit
    for key, value in ours.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key


def test_ade20k_class_count_gets_ade20k_names(tmp_path):
    sl.save_transformers(tiny(num_classes=150), tmp_path)
    hf = open_in_transformers(tmp_path)
    assert [hf.config.id2label[k] for k in range(150)] == list(ADE20K_CLASSES)


@pytest.mark.parametrize("name, why", [("segformer_b0_rope_axial", "pos_encoding='axial'"),
                                       ("boostformer_b0", "mixer='pooled'")])  # fmt: skip
def test_what_transformers_cannot_express_is_refused_in_one_line(tmp_path, name, why):
    with pytest.raises(ValueError, match=f"{name} has no transformers equivalent .*{why}") as info:
        sl.save_transformers(sl.create_model(name), tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    classifier = sl.create_classifier("segformer_b0", num_classes=10)
    with pytest.raises(ValueError, match=r"\(as SegformerForSemanticSegmentation\); got ImageClassifier"):
        sl.save_transformers(classifier, tmp_path / "out")


def test_a_failed_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    def disk_trouble(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError("simulated write failure")

    monkeypatch.setattr(hf_export, "save_file", disk_trouble)
    with pytest.raises(OSError, match="simulated"):
        sl.save_transformers(tiny(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_export_command_writes_for_transformers(tmp_path, capsys):
    ours = tiny()
    ours.save_pretrained(tmp_path / "ours")
    assert main(["export", str(tmp_path / "ours"), "--transformers", str(tmp_path / "hf")]) == 0
    assert f"for transformers to {tmp_path / 'hf'}" in capsys.readouterr().out
    assert max_difference(ours, open_in_transformers(tmp_path / "hf")) < TOLERANCE

    assert main(["export", "segformer_b0_rope_mixed", "--transformers", str(tmp_path / "rope")]) == 2
    assert "has no transformers equivalent" in capsys.readouterr().err and not (tmp_path / "rope").exists()
    assert main(["export", str(tmp_path / "ours"), "--transformers", str(tmp_path / "x"), "--fp16"]) == 2
    assert "--fp16: options of --onnx, not of --transformers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "ours")])  # --onnx or --transformers is needed
