"""Numerical parity with transformers' SegFormer, in both directions of the conversion.

transformers is a test-only dependency; these tests are skipped without it.
"""

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import segformer_lab as sl
from helpers import randomised
from segformer_lab.models.checkpoint import to_hf_config, to_hf_state_dict

transformers = pytest.importorskip("transformers")

TOLERANCE = 1e-4


def hf_checkpoint(config: sl.ModelConfig, directory) -> nn.Module:
    """A random ``SegformerForSemanticSegmentation`` shaped like ``config``, written to
    ``directory`` by transformers' own ``save_pretrained``."""
    hf = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(**to_hf_config(config)))
    randomised(hf, scale=0.02).eval().save_pretrained(directory)
    return hf


@torch.no_grad()
def max_difference(ours: nn.Module, hf: nn.Module, batch: int, size: tuple[int, int]) -> float:
    x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))
    expected = hf(pixel_values=x).logits
    actual = ours(x)
    assert actual.shape == expected.shape
    return (actual - expected).abs().max().item()


@pytest.fixture(scope="module")
def b0(tmp_path_factory):
    directory = tmp_path_factory.mktemp("segformer_b0_hf")
    return hf_checkpoint(sl.get_config("segformer_b0"), directory), directory


@pytest.mark.parametrize("size", [(512, 512), (333, 517)])
def test_b0_from_transformers_directory_matches_logits(b0, size):
    hf, directory = b0
    ours = sl.load_model(directory)
    assert ours.config.name == "segformer_b0" and ours.config.num_classes == 150
    assert max_difference(ours, hf, batch=2, size=size) < TOLERANCE


def test_b2_shaped_model_matches_logits(tmp_path):
    hf = hf_checkpoint(sl.get_config("segformer_b2", num_classes=19), tmp_path)
    ours = sl.load_model(tmp_path)
    assert ours.config.name == "segformer_b2" and ours.config.num_classes == 19
    assert max_difference(ours, hf, batch=2, size=(96, 160)) < TOLERANCE


def test_create_model_with_transformers_directory(b0):
    hf, directory = b0
    model = sl.create_model("segformer_b0", pretrained=directory).eval()
    reference = sl.load_model(directory)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert max_difference(model, hf, batch=1, size=(128, 96)) < TOLERANCE


def test_transformers_loads_our_export(tmp_path):
    ours = randomised(sl.create_model("segformer_b0"), scale=0.02).eval()
    state = {k: v.contiguous() for k, v in to_hf_state_dict(ours.state_dict()).items()}
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    transformers.SegformerConfig(**to_hf_config(ours.config)).save_pretrained(tmp_path)

    hf, info = transformers.SegformerForSemanticSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert max_difference(ours, hf.eval(), batch=2, size=(333, 517)) < TOLERANCE
