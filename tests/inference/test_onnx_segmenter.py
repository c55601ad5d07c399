"""An exported file in place of a checkpoint: ``OnnxSegmenter`` predicts what ``Segmenter``
predicts, reads its classes, colours and normalisation from the file's metadata, and asks
for them (one line) when the file has none."""

import numpy as np
import pytest
import torch
from helpers import EXPORTED_CLASSES, EXPORTED_PALETTE

from segformer_lab.export import MetadataError
from segformer_lab.inference import OnnxModel, OnnxSegmenter, Segmenter, open_segmenter

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((70, 90), (70, 90), (101, 67))]


@pytest.fixture(scope="module")
def bare(exported_b0, tmp_path_factory):
    """The exported file with its metadata removed, as a file from elsewhere."""
    proto = onnx.load(str(exported_b0[1]))
    del proto.metadata_props[:]
    path = tmp_path_factory.mktemp("bare") / "bare.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("options", [{}, {"mode": "slide", "crop": 64, "stride": 40, "flip": True},
                                     {"size": (64, 96), "scales": (0.75, 1.0)}])
def test_onnx_segmenter_predicts_what_the_checkpoint_predicts(exported_b0, options):
    checkpoint, path = exported_b0
    seg, reference = OnnxSegmenter(path, **options), Segmenter(checkpoint, **options)
    got = seg.predict_batch(images(), probabilities=True, batch_size=2)
    expected = reference.predict_batch(images(), probabilities=True, batch_size=2)
    for (labels, probs), (want_labels, want_probs), image in zip(got, expected, images()):
        assert labels.shape == image.shape[:2] and probs.shape == (3, *image.shape[:2])
        np.testing.assert_allclose(probs, want_probs, atol=1e-5)
        assert (labels == want_labels).mean() > 0.999
    assert len(np.unique(expected[0][0])) > 1  # a test with one class everywhere would prove little


def test_classes_and_colours_come_from_the_metadata(exported_b0):
    seg = OnnxSegmenter(exported_b0[1])
    assert seg.class_names == list(EXPORTED_CLASSES) and seg.num_classes == 3
    assert seg.palette.tolist() == [list(c) for c in EXPORTED_PALETTE]
    labels = seg.predict(images()[0])
    assert np.array(seg.label_image(labels).getpalette()[:9]).reshape(3, 3).tolist() == seg.palette.tolist()
    assert seg.overlay(images()[0], labels).size[0] > 90  # image plus legend panel
    assert "segformer_b0" in repr(seg) and "float32" in repr(seg)
    assert OnnxSegmenter(exported_b0[1], class_names=["a", "b", "c"]).class_names == ["a", "b", "c"]


def test_a_file_without_metadata_needs_classes_and_normalisation(exported_b0, bare):
    with pytest.raises(MetadataError, match=r"bare.onnx carries no segformer-lab metadata.*--num-classes K.*"
                                            r"--normalization imagenet\|half\|unit or --mean R G B --std R G B"):
        OnnxSegmenter(bare)
    with pytest.raises(MetadataError, match="no segformer-lab metadata"):
        OnnxSegmenter(bare, num_classes=3)  # normalisation missing
    seg = OnnxSegmenter(bare, num_classes=3, mean=IMAGENET[0], std=IMAGENET[1])
    assert seg.class_names == ["class 0", "class 1", "class 2"] and seg.model.precision == "unknown"
    np.testing.assert_array_equal(seg.predict(images()[2]), OnnxSegmenter(exported_b0[1]).predict(images()[2]))
    with pytest.raises(ValueError, match="4 classes asked for, but its output shape says 3"):
        OnnxModel(bare, num_classes=4, mean=IMAGENET[0], std=IMAGENET[1])


def test_another_normalisation_is_the_one_its_preprocessing_applies(exported_b0, bare):
    """A file trained on [-1, 1] pixels gets (rgb / 255 - 0.5) / 0.5, not ImageNet's values."""
    checkpoint, _ = exported_b0
    model = Segmenter(checkpoint).model
    rgb = images()[0]
    half = OnnxSegmenter(bare, num_classes=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        expected = model((x - 0.5) / 0.5)
    assert half.preprocessing.mean == (0.5,) * 3 and "mean [0.5, 0.5, 0.5]" in half.preprocessing_line
    torch.testing.assert_close(half.model(half.preprocessing.pixel_values(rgb)), expected, atol=1e-4, rtol=1e-4)
    same = OnnxSegmenter(bare, num_classes=3, mean=IMAGENET[0], std=IMAGENET[1])
    assert not torch.allclose(same.model(same.preprocessing.pixel_values(rgb)), expected, atol=1e-2)


def test_a_model_that_is_not_a_segmentation_model_is_refused(tmp_path):
    """A classifier-shaped graph (logits [batch, classes]) and a graph taking a vector."""
    from onnx import TensorProto, helper

    def save(name, inputs, nodes, output):
        graph = helper.make_graph(nodes, name, inputs, [output])
        path = tmp_path / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
        return path

    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "h", "w"])
    classifier = save("classifier", [image], [helper.make_node("GlobalAveragePool", ["x"], ["p"]),
                                              helper.make_node("Flatten", ["p"], ["y"])],
                      helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]))
    with pytest.raises(ValueError, match=r"classifier.onnx: its output 'y' has shape \[batch, 3\] \(rank 2\): "
                                         "not a segmentation model"):
        OnnxModel(classifier, num_classes=3, mean=IMAGENET[0], std=IMAGENET[1])
    vector = helper.make_tensor_value_info("v", TensorProto.FLOAT, ["batch", 8])
    flat = save("vector", [vector], [helper.make_node("Relu", ["v"], ["y"])],
                helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8]))
    with pytest.raises(ValueError, match=r"vector.onnx: takes v \[batch, 8\]: not a segmentation model"):
        OnnxModel(flat)


def test_missing_and_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.onnx: no such ONNX file"):
        OnnxSegmenter(tmp_path / "nothing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="junk.onnx: onnxruntime cannot load it"):
        OnnxSegmenter(tmp_path / "junk.onnx")


def test_open_segmenter_chooses_by_suffix(exported_b0):
    checkpoint, path = exported_b0
    assert type(open_segmenter(path)) is OnnxSegmenter and type(open_segmenter(checkpoint)) is Segmenter
    with pytest.raises(ValueError, match="normalisation options are for .onnx files"):
        open_segmenter(checkpoint, mean=(0.5,) * 3, std=(0.5,) * 3)
