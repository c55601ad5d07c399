"""``data.Preprocessing``: the one definition of how a model takes images (sizes, the one
rounding rule, the one resize, normalisation), its serialisations (ours, transformers'
``preprocessor_config.json``) and the precedence of options over it."""

import json

import numpy as np
import pytest
import torch

from segformer_lab.data import (DATASET_DEFAULT, IMAGE_DEFAULT, IMAGENET_MEAN, Preprocessing, PreprocessingError,
                                build_transforms, choose_preprocessing)


def test_sizes_and_the_one_rounding_rule():
    assert Preprocessing(scale=(2048, 512)).input_size(300, 3000) == (205, 2048)  # long side bound
    assert Preprocessing(scale=(512, 2048)).input_size(512, 683) == (512, 683)  # either order
    assert Preprocessing(size=(64, 96)).input_size(10, 1000) == (64, 96)
    assert IMAGE_DEFAULT.input_size(20, 50) == (32, 80)  # own size, short side scaled up to the model's 32
    # multiple_of rounds UP everywhere (training's validation, eval, predict): mmseg's AlignedResize
    assert Preprocessing(scale=(100, 50), multiple_of=32).input_size(40, 60) == (64, 96)
    assert Preprocessing(multiple_of=32).input_size(100, 150) == (128, 160)
    assert Preprocessing(size=(33, 65), multiple_of=32).input_size(1, 1) == (64, 96)
    with pytest.raises(PreprocessingError, match="too small"):
        Preprocessing(scale=(20, 10)).input_size(100, 100)


def test_the_validation_pipeline_is_the_preprocessing_and_antialiases_when_shrinking():
    """Stripes one pixel wide shrunk 3.2x: antialiased, they average to grey; the old
    validation resize (OpenCV bilinear on uint8, no antialiasing) aliased them into bands
    (a standard deviation of 1.24 in normalised units, against 0.11 here)."""
    image = np.zeros((128, 128, 3), np.uint8)
    image[:, ::2] = 255
    mask = np.zeros((128, 128), np.uint8)
    pipeline = build_transforms("val", scale=(40, 40))
    assert isinstance(pipeline, Preprocessing) and pipeline.scale == (40, 40)
    x, labels = pipeline(image, mask)
    assert x.shape == (3, 40, 40) and labels.shape == (128, 128)  # labels keep their size
    grey = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor((0.229, 0.224, 0.225))
    torch.testing.assert_close(x.mean((1, 2)), grey, atol=0.05, rtol=0)
    assert x.std((1, 2)).max() < 0.2  # no aliased bands
    assert torch.equal(pipeline.pixel_values(image)[0], x)  # the same as Segmenter's path


def test_normalisation_and_resize_commute_as_documented():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    half = Preprocessing(size=(40, 56), mean=(0.5,) * 3, std=(0.5,) * 3)
    resized = torch.nn.functional.interpolate(torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255, size=(40, 56),
                                              mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(half.pixel_values(rgb), (resized - 0.5) / 0.5, atol=1e-5, rtol=0)


def test_round_trip_and_errors_name_the_key():
    p = Preprocessing(scale=[2048, 512], multiple_of=32, mode="slide", crop=512, stride=[341, 300],
                      reduce_zero_label=True)
    assert p.crop == (512, 512) and Preprocessing.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(PreprocessingError, match=r"config: unknown preprocessing key\(s\) \['sise'\]"):
        Preprocessing.from_dict({"sise": [1, 2]}, "config")
    with pytest.raises(PreprocessingError, match="scale .* or size .*, not both"):
        Preprocessing(scale=(2048, 512), size=(512, 512))
    with pytest.raises(PreprocessingError, match="preprocessing mode: 'tiles' is unknown"):
        Preprocessing(mode="tiles")
    with pytest.raises(PreprocessingError, match="std: values must be positive"):
        Preprocessing(std=(0, 1, 1))


def test_transformers_image_processor_both_ways():
    nvidia = {"do_normalize": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
              "image_processor_type": "SegformerImageProcessor", "image_std": [0.229, 0.224, 0.225],
              "do_reduce_labels": True, "resample": 2, "size": {"height": 512, "width": 512}}
    p = Preprocessing.from_image_processor(nvidia)
    assert p == Preprocessing(size=(512, 512), reduce_zero_label=True)
    assert Preprocessing.from_image_processor(p.to_image_processor()) == p
    keep_ratio = Preprocessing(scale=(2048, 512)).to_image_processor()
    assert keep_ratio["size"] == {"shortest_edge": 512, "longest_edge": 2048}
    assert Preprocessing.from_image_processor(keep_ratio).scale == (2048, 512)
    assert Preprocessing.from_image_processor({"size": 640, "reduce_labels": True}).size == (640, 640)  # older files
    assert IMAGE_DEFAULT.to_image_processor()["do_resize"] is False


def test_options_over_the_stored_over_the_defaults():
    stored = Preprocessing(scale=(4096, 128), multiple_of=32)
    chosen, line = choose_preprocessing(stored, DATASET_DEFAULT, "runs/b0")
    assert chosen == stored and line == (
        "preprocessing: short side <= 128 and long side <= 4096 (keep ratio), sides rounded up to multiples of 32, "
        "bilinear antialiased, ImageNet mean/std, whole image (stored with runs/b0)")
    chosen, line = choose_preprocessing(stored, DATASET_DEFAULT, "runs/b0", size=(64, 64), mode=None)
    assert chosen.size == (64, 64) and chosen.scale is None and chosen.multiple_of == 32
    assert line.endswith("(stored with runs/b0; size from the options)")
    chosen, line = choose_preprocessing(None, DATASET_DEFAULT, "old.pth")
    assert chosen == DATASET_DEFAULT and "(the defaults: old.pth stores none)" in line
    chosen, _ = choose_preprocessing(stored, DATASET_DEFAULT, "runs/b0", own_size=True)
    assert chosen.scale is None and chosen.input_size(100, 150) == (128, 160)
