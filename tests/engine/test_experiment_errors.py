"""An experiment a user wrote wrong is one line naming the file or key (exit 2), found before
anything is built or written: malformed YAML (as the recipe, and as a damaged ``RUN/config.yaml``
on ``--resume``), a file that is not UTF-8 or not a mapping, and ``--set`` values the
recipe's open sections cannot take."""

from __future__ import annotations

import pytest
import yaml

from segformer_lab import cli

RECIPE = {
    "model": {"name": "segformer_b0", "num_classes": 3},
    "data": {"format": "folder", "root": "data", "train_transforms": {"name": "rope_seed", "size": [32, 32]},
             "num_workers": 0},
    "trainer": {"max_steps": 1, "accelerator": "cpu"},
}

# (name, the recipe file's bytes, --set overrides, what the line says after "error: ")
CASES = [
    ("malformed", b"model:\n  name: [segformer_b0\n", [],
     "{recipe}: not valid YAML at line 3, column 1 (expected ',' or ']', but got '<stream end>')"),
    ("tab-indent", b"model:\n\tname: segformer_b0\n", [], "{recipe}: not valid YAML at line 2, column 1"),
    ("top-level-list", b"- model\n- data\n", [],
     "{recipe}: an experiment is a mapping of sections (model, data, optim, trainer...), got a list"),
    ("top-level-word", b"segformer_b0\n", [], "{recipe}: an experiment is a mapping of sections"),
    ("not-utf8", "model:\n  name: café\n".encode("latin-1"), [],
     "{recipe}: not a UTF-8 text file (byte 18: invalid continuation byte)"),
    ("betas-one", None, ["optim.betas=[0.9]"], "optim: betas must be a list of 2 (each a number), got [0.9]"),
    ("betas-words", None, ["optim.betas=[a, b]"], "optim: betas must be a list of 2 (each a number)"),
    ("data-options", None, ["data.options.bogus=1"],
     "unknown config key 'data.options.bogus'; known here: ['classes', 'palette', 'reduce_zero_label']"),
    ("train-transforms", None, ["data.train_transforms.bogus=1"],
     "unknown config key 'data.train_transforms.bogus'; known here: ['jitter', 'size']"),
    ("val-transforms", None, ["data.val_transforms.bogus=64"],
     "data.val_transforms: unknown preprocessing key(s) ['bogus']; known: ['antialias', 'crop',"),
    ("transforms-name", None, ["data.train_transforms={name: fancy}"],
     "data.train_transforms.name: unknown transforms 'fancy'; choose from"),
    ("data-format", None, ["data.format=pascal"], "data.format: unknown dataset format 'pascal'; choose from"),
]


@pytest.mark.parametrize("text, overrides, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_wrong_experiment_is_one_line(tmp_path, capsys, text, overrides, message):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_bytes(yaml.safe_dump(RECIPE).encode() if text is None else text)
    argv = ["train", str(recipe), "--out", str(tmp_path / "run")] + [a for o in overrides for a in ("--set", o)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"segformer-lab train: error: {message.format(recipe=recipe)}"), err
    assert not (tmp_path / "run").exists()


def test_a_damaged_run_config_on_resume_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read")
    (run / "config.yaml").write_text(yaml.safe_dump(RECIPE)[:40] + "\n  : [\n")  # cut off mid-write, then junk
    assert cli.main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"segformer-lab train: error: {run / 'config.yaml'}: not valid YAML "
                                                   "at line"), err
