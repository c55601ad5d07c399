"""Class names and colours travel with a model (issue 13, item 1): ``ModelConfig.class_names``
/ ``palette``, stored in config.json as transformers' ``id2label`` and a palette list, read
back by ``from_pretrained`` / ``load_model`` (ours and Hugging Face's), set by
``create_model(class_names=...)``, written back for transformers, listed in the model card."""

import json
import logging

import pytest

import segformer_lab as sl
from segformer_lab.models import ConfigError
from segformer_lab.models.checkpoint import to_hf_config
from segformer_lab.models.hub import model_card
from segformer_lab.models.labels import names_from_id2label, resolve_class_names

NAMES = ("sky", "road", "car")
PALETTE = ((10, 20, 30), (40, 50, 60), (70, 80, 90))


def tiny(**overrides) -> sl.ModelConfig:
    return sl.get_config("segformer_b0", **overrides).with_stages(depth=1)


def test_config_json_holds_id2label_and_palette_and_reads_them_back(tmp_path):
    model = sl.create_model(config=tiny(num_classes=3, class_names=NAMES, palette=PALETTE))
    model.save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["id2label"] == {"0": "sky", "1": "road", "2": "car"}
    assert stored["palette"] == [list(c) for c in PALETTE]
    assert "class_names" not in stored
    for load in (sl.load_model, sl.SegmentationModel.from_pretrained):
        config = load(tmp_path).config
        assert config.class_names == NAMES and config.palette == PALETTE
        assert config == model.config
    plain = sl.create_model(config=tiny(num_classes=3))
    assert "id2label" not in plain.config.to_dict() and "palette" not in plain.config.to_dict()


def test_create_model_class_names_set_the_names_and_count():
    model = sl.create_model("segformer_b0", class_names=list(NAMES))
    assert model.config.num_classes == 3 and model.config.class_names == NAMES
    assert model.decode_head.classifier.out_channels == 3
    with pytest.raises(ConfigError, match=r"class_names: 3 names for num_classes=5"):
        sl.create_model("segformer_b0", num_classes=5, class_names=NAMES)


def test_wrong_counts_are_one_line_errors_naming_the_source(tmp_path):
    with pytest.raises(ConfigError, match=r"palette: 2 colours for num_classes=3"):
        tiny(num_classes=3, palette=PALETTE[:2])
    with pytest.raises(ConfigError, match=r"palette: colours must be \[r, g, b\].*\[300, 0, 0\]"):
        tiny(num_classes=1, palette=[[300, 0, 0]])
    sl.create_model(config=tiny(num_classes=3, class_names=NAMES)).save_pretrained(tmp_path)
    stored = json.loads((tmp_path / "config.json").read_text())
    stored["id2label"] = {"0": "sky", "1": "road"}
    (tmp_path / "config.json").write_text(json.dumps(stored))
    for load in (sl.load_model, sl.SegmentationModel.from_pretrained):
        with pytest.raises(sl.CheckpointError, match=rf"{tmp_path / 'config.json'}: class_names: 2 names for "
                                                     r"num_classes=3"):
            load(tmp_path)
    stored["id2label"] = {"0": "sky", "1": "road", "3": "car"}
    (tmp_path / "config.json").write_text(json.dumps(stored))
    with pytest.raises(sl.CheckpointError, match=r"config.json: id2label keys must be 0..2, got \[0, 1, 3\]"):
        sl.load_model(tmp_path)


def test_another_class_count_drops_the_old_names():
    config = tiny(num_classes=3, class_names=NAMES, palette=PALETTE)
    assert config.replace(drop_path_rate=0.0).class_names == NAMES
    other = config.replace(num_classes=4)
    assert other.class_names is None and other.palette is None
    assert config.replace(num_classes=2, class_names=["a", "b"]).class_names == ("a", "b")


def test_hugging_face_id2label_is_read(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.SegformerConfig(**{**to_hf_config(tiny(num_classes=3)),
                                                "id2label": dict(enumerate(NAMES)),
                                                "label2id": {n: i for i, n in enumerate(NAMES)}})
    transformers.SegformerForSemanticSegmentation(hf_config).save_pretrained(tmp_path)
    model = sl.load_model(tmp_path)
    assert model.config.class_names == NAMES
    assert sl.Segmenter(model).class_names == list(NAMES)

    placeholders = transformers.SegformerConfig(**{**to_hf_config(tiny(num_classes=3)), "id2label": None,
                                                   "label2id": None, "num_labels": 3})
    assert placeholders.id2label[0] == "LABEL_0"
    transformers.SegformerForSemanticSegmentation(placeholders).save_pretrained(tmp_path / "plain")
    assert sl.load_model(tmp_path / "plain").config.class_names is None  # LABEL_k names nothing


def test_names_written_for_transformers_round_trip():
    transformers = pytest.importorskip("transformers")
    hf = transformers.SegformerConfig(**to_hf_config(tiny(num_classes=3, class_names=NAMES)))
    assert hf.id2label == dict(enumerate(NAMES)) and hf.label2id == {n: i for i, n in enumerate(NAMES)}
    unnamed = to_hf_config(tiny(num_classes=3))
    assert unnamed["id2label"] == {"0": "class 0", "1": "class 1", "2": "class 2"}
    assert names_from_id2label(unnamed["id2label"]) is None  # our placeholders name nothing either


def test_unknown_names_fall_back_and_say_so_once(caplog):
    with caplog.at_level(logging.WARNING, logger="segformer_lab"):
        assert resolve_class_names(None, 2, "runs/x") == ["class 0", "class 1"]
    assert [r.getMessage() for r in caplog.records] == ["runs/x stores no class names: using 'class 0' ... 'class 1'"]
    assert resolve_class_names(None, 150, "m")[:2] == ["wall", "building"]
    with pytest.raises(ValueError, match="names.txt: 2 class names for 3 classes"):
        resolve_class_names(["a", "b"], 3, "names.txt")


def test_model_card_lists_the_models_own_names():
    card = model_card(sl.create_model(config=tiny(num_classes=3, class_names=NAMES)))
    assert "0. sky\n1. road\n2. car" in card
    assert "0. other" in model_card(sl.create_model(config=tiny(num_classes=1, class_names=["x"])),
                                    class_names=["other"])
