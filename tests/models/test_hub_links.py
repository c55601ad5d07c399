"""Links a user did not mean to be read as Hub ids: a dangling symbolic link spelled like a
Hub id (``me/good -> /nonexistent``) is a broken path, said as such, never the Hub model of
that name; a cached snapshot whose weights link to a missing blob is a damaged cache, not
a Hub model without weights."""

from __future__ import annotations

import pytest
from helpers import hub_cache

import segformer_lab as sl
from segformer_lab.models.hub import HubError

huggingface_hub = pytest.importorskip("huggingface_hub")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An offline huggingface_hub cache holding ``me/good``: a tiny model of ours."""
    cache = tmp_path / "hf_home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    config = sl.get_config("segformer_b0", num_classes=3).with_stages(depth=1)
    files = sl.create_model(config=config).save_pretrained(tmp_path / "files")
    return hub_cache(cache, "me/good", files)


def test_the_hub_model_loads_offline(hf_cache):
    assert sl.load_model("me/good").config.num_classes == 3  # the cache the tests below break


def test_a_dangling_link_shadowing_a_hub_id_is_broken(hf_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me").mkdir()
    (tmp_path / "me" / "good").symlink_to("/nonexistent")
    with pytest.raises(sl.CheckpointError, match="^me/good is a broken symbolic link: its target /nonexistent does "
                                                 "not exist"):
        sl.load_model("me/good")


def test_a_missing_blob_is_a_damaged_cache(hf_cache):
    weights = hf_cache / "model.safetensors"
    weights.resolve().unlink()
    with pytest.raises(HubError) as info:
        sl.load_model("me/good")
    message = str(info.value)
    assert message.startswith("me/good: the Hugging Face cache is damaged: model.safetensors in ") and "\n" not in message
    assert message.endswith(f"delete {hf_cache.parent.parent} and fetch the model again")
