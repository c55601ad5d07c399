"""A ``config.json`` whose values have the wrong types (a hand edit, another tool's output)
is one ``CheckpointError`` naming the file and the field, never a ``TypeError`` from deep
inside validation: ours (``segformer_lab`` format) and transformers' (``SegformerConfig``)."""

from __future__ import annotations

import json
import shutil

import pytest

import segformer_lab as sl
from segformer_lab.models import ConfigError, DecoderConfig, ModelConfig, StageConfig, mit_stages



def tiny() -> ModelConfig:
    return ModelConfig(stages=mit_stages((16, 32, 40, 64), (1, 1, 1, 1)), decoder=DecoderConfig(width=32),
                       num_classes=3)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``{"ours": dir, "transformers": dir}``: the same tiny model in each format."""
    root = tmp_path_factory.mktemp("saved")
    model = sl.SegmentationModel(tiny())
    return {"ours": model.save_pretrained(root / "ours"), "transformers": sl.save_transformers(model, root / "hf")}


def edited(saved, kind: str, tmp_path, edit) -> str:
    directory = tmp_path / kind
    shutil.copytree(saved[kind], directory)
    config = json.loads((directory / "config.json").read_text())
    config = edit(config)
    (directory / "config.json").write_text(json.dumps(config))
    return str(directory)


def setting(path: list, value):
    """An edit setting ``config[path[0]][path[1]]... = value``."""
    def edit(config):
        target = config
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return config
    return edit


# (name, format, edit of the config.json dict, what follows "DIR/config.json: ")
CASES = [
    ("stage-width-string", "ours", setting(["stages", 1, "width"], "32"),
     "stage 1: width must be an integer, got '32'"),
    ("num-classes-string", "ours", setting(["num_classes"], "3"), "config: num_classes must be an integer, got '3'"),
    ("num-classes-float", "ours", setting(["num_classes"], 3.0), "config: num_classes must be an integer, got 3.0"),
    ("stages-dict", "ours", setting(["stages"], {"width": 32}), "config: stages must be a list (each a mapping of "
                                                                  "StageConfig fields), got {'width': 32}"),
    ("stages-nulls", "ours", setting(["stages"], [None, None]), "config: stages must be a list (each a mapping of "
                                                                 "StageConfig fields), got [None, None]"),
    ("decoder-string", "ours", setting(["decoder"], "all_mlp"), "config: decoder must be a mapping of DecoderConfig "
                                                                 "fields, got 'all_mlp'"),
    ("stage-fold-string", "ours", setting(["stages", 0, "fold"], "yes"), "stage 0: fold must be true or false"),
    ("layer-scale-string", "ours", setting(["stages", 0, "layer_scale"], "1e-6"),
     "stage 0: layer_scale must be a number or null, got '1e-6'"),
    ("decoder-width-null", "ours", setting(["decoder", "width"], None), "decoder: width must be an integer, got None"),
    ("rope-size", "ours", setting(["rope", "reference_size"], [512]), "rope: reference_size must be a list of 2"),
    ("num-labels-word", "transformers", setting(["num_labels"], "three"),
     "num_labels must be an integer, got 'three'"),
    ("hidden-sizes-strings", "transformers", setting(["hidden_sizes"], ["16", "32", "40", "64"]),
     "hidden_sizes must be a list (each an integer), got ['16', '32', '40', '64']"),
    ("depth-zero", "transformers", setting(["depths"], [0, 1, 1, 1]), "stage 0: depth must be >= 1, got 0"),
]


@pytest.mark.parametrize("kind, edit, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_wrong_type_names_the_file_and_field(saved, tmp_path, kind, edit, message):
    directory = edited(saved, kind, tmp_path, edit)
    with pytest.raises(sl.CheckpointError) as info:
        sl.load_model(directory)
    assert str(info.value).startswith(f"{directory}/config.json: {message}"), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["ours", "transformers"])
def test_a_config_json_that_is_not_an_object(saved, tmp_path, kind):
    directory = edited(saved, kind, tmp_path, lambda config: [config])
    with pytest.raises(sl.CheckpointError, match=f"^{directory}/config.json: the top level must be a JSON object "
                                                 "of config fields, got list$"):
        sl.load_model(directory)


def test_the_python_api_checks_types_too():
    with pytest.raises(ConfigError, match="^stage 0: width must be an integer, got '32'$"):
        ModelConfig(stages=(StageConfig(width="32", depth=1, num_heads=1, sr_ratio=1),))
    with pytest.raises(ConfigError, match="^a model config is a mapping of its fields, got list$"):
        ModelConfig.from_dict([])
    assert ModelConfig.from_dict(tiny().to_dict()) == tiny()  # JSON's lists and ints pass
