"""What an exported file carries in its ONNX metadata, and how a bad value is refused."""

import json

import pytest
from helpers import EXPORTED_CLASSES, EXPORTED_PALETTE

import segformer_lab as sl
from segformer_lab.export import MetadataError, OnnxMetadata, read_metadata
from segformer_lab.export.metadata import export_metadata

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def metadata(**changes) -> OnnxMetadata:
    fields = dict(model="segformer_b0", num_classes=3, mean=IMAGENET[0], std=IMAGENET[1], precision="float16",
                  opset=16, class_names=("a", "b", "c"), palette=((1, 2, 3), (4, 5, 6), (7, 8, 9)))
    return OnnxMetadata(**{**fields, **changes})


def test_metadata_round_trips_through_the_string_props():
    original = metadata()
    props = original.to_props()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in props.items())
    assert json.loads(props["class_names"]) == ["a", "b", "c"] and props["precision"] == "float16"
    assert read_metadata(props, "x.onnx") == original
    bare = metadata(class_names=None, palette=None)
    assert "class_names" not in bare.to_props() and read_metadata(bare.to_props(), "x.onnx") == bare


def test_a_file_without_our_metadata_has_none():
    assert read_metadata({}, "x.onnx") is None
    assert read_metadata({"author": "someone", "num_classes": "3"}, "x.onnx") is None


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("num_classes", "three", "'num_classes' = 'three' does not parse"),
        ("num_classes", "0", "'num_classes' = '0' does not parse"),
        ("mean", "[0.5, 0.5]", "'mean'.*needs 3 values"),
        ("std", "[0.5, 0, 0.5]", "'std'.*must be positive"),
        ("class_names", "sky,road,car", "'class_names' = 'sky,road,car' does not parse"),
        ("palette", "[[300, 0, 0], [0, 0, 0], [0, 0, 0]]", "'palette'.*0..255"),
        ("class_names", '["sky", "road"]', "2 class_names for 3 classes"),
    ],
)
def test_a_malformed_value_is_refused_naming_the_file_and_key(key, value, match):
    props = {**metadata().to_props(), key: value}
    with pytest.raises(MetadataError, match=f"^b0.onnx: .*{match}"):
        read_metadata(props, "b0.onnx")


def test_required_keys_are_named_when_missing():
    props = metadata().to_props()
    del props["num_classes"]
    with pytest.raises(MetadataError, match="b0.onnx: the segformer-lab metadata has no 'num_classes'"):
        read_metadata(props, "b0.onnx")


def test_export_metadata_takes_the_models_names_colours_and_preprocessing():
    config = sl.get_config("segformer_b0", num_classes=2, class_names=["a", "b"], palette=[[1, 2, 3], [4, 5, 6]])
    got = export_metadata(sl.create_model(config=config.with_stages(depth=1)), 16, "float16")
    assert got == OnnxMetadata(model="segformer_b0", num_classes=2, mean=IMAGENET[0], std=IMAGENET[1],
                               precision="float16", opset=16, class_names=("a", "b"), palette=((1, 2, 3), (4, 5, 6)))
    plain_config = config.replace(class_names=None, palette=None).with_stages(depth=1)
    plain = export_metadata(sl.create_model(config=plain_config), 18, "float32")
    assert plain.class_names is None and plain.palette is None and "class_names" not in plain.to_props()
    assert plain.preprocessing is None and "preprocessing" not in plain.to_props()
    # a model's own normalisation and preprocessing (the exporter wrote ImageNet's whatever the model's)
    stored = sl.Preprocessing(scale=(1024, 256), mean=(0.5,) * 3, std=(0.5,) * 3)
    own = export_metadata(sl.create_model(config=plain_config.replace(preprocessing=stored)), 18, "float32")
    assert own.mean == own.std == (0.5, 0.5, 0.5) and own.preprocessing == stored
    assert read_metadata(own.to_props(), "x.onnx") == own


def test_an_older_files_normalisation_is_still_read_and_a_bad_preprocessing_refused():
    older = metadata(mean=(0.5,) * 3, std=(0.5,) * 3)  # written before preprocessing travelled
    assert read_metadata(older.to_props(), "old.onnx").preprocessing is None
    props = {**older.to_props(), "preprocessing": '{"scale": [2048, 512], "mode": "tiles"}'}
    with pytest.raises(MetadataError, match="b0.onnx: metadata 'preprocessing' .* mode: 'tiles' is unknown"):
        read_metadata(props, "b0.onnx")


def test_an_exported_file_carries_its_metadata(exported_b0):
    """Read back as any onnxruntime user would (custom_metadata_map), and with onnx."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    _, path = exported_b0
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == props
    assert props["segformer_lab_version"] == sl.__version__ and props["input"] == session.get_inputs()[0].name
    got = read_metadata(props, str(path))
    assert got == OnnxMetadata(model="segformer_b0", num_classes=3, mean=IMAGENET[0], std=IMAGENET[1],
                               precision="float32", opset=18, class_names=EXPORTED_CLASSES, palette=EXPORTED_PALETTE)
    assert got.output_stride == 4 and session.get_outputs()[0].shape[1] == got.num_classes
