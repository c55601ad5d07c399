"""The command line's wiring: every subcommand builds, only the one that runs is imported, and a
user's mistake or a machine fault is one line naming its culprit (exit 2) while a bug keeps its traceback."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from datasets_on_disk import folder_mask, make_folder
from segformer_lab import cli
from segformer_lab.engine import resolve_config
from segformer_lab.models import DecoderConfig, ModelConfig, SegmentationModel, mit_stages


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_subcommand_builds_its_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: segformer-lab {command}" in capsys.readouterr().out


def test_help_lists_every_command_without_importing_torch():
    """``segformer-lab --help`` (and the package import) stay light: the tools, and with
    them torch, Lightning and onnxruntime, load only for the subcommand that runs."""
    code = (
        "import sys\n"
        "from segformer_lab import cli\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'onnxruntime', 'segformer_lab.tools') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for command in cli.COMMANDS:
        assert command in out


def test_a_subcommand_imports_only_its_own_tool():
    code = (
        "import sys\n"
        "from segformer_lab import cli\n"
        "cli.build_parser('models')\n"
        "print(sorted(m for m in sys.modules if m.startswith('segformer_lab.tools.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['segformer_lab.tools.catalog']"


# ----------------------------------------------------------------------------- user errors: one line, exit 2

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def tiny_config(num_classes: int = 3, widths=(16, 32, 40, 64)) -> ModelConfig:
    return ModelConfig(stages=mit_stages(widths, (1, 1, 1, 1)), decoder=DecoderConfig(width=32),
                       num_classes=num_classes)


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """A tiny model and dataset, and one of each bad input the CLI must name in one line."""
    root = tmp_path_factory.mktemp("bad")
    files = {"model": SegmentationModel(tiny_config()).save_pretrained(root / "model")}
    files["data"] = make_folder(root / "good", {"a": folder_mask(), "b": folder_mask()})
    files["corrupt_data"] = make_folder(root / "corrupt", {"a": folder_mask(), "b": folder_mask()})
    (files["corrupt_data"] / "images" / "train" / "b.png").write_bytes(b"not an image at all")
    files["other_arch"] = SegmentationModel(tiny_config(widths=(8, 16, 40, 32))).save_pretrained(root / "other")
    files["unsafe"] = root / "unsafe.pt"
    torch.save({"w": torch.ones(2), "payload": print}, files["unsafe"])  # unpickling would call a global
    state = SegmentationModel(tiny_config()).state_dict()
    torch.save(state, root / "whole.pt")
    files["truncated"] = root / "truncated.pt"
    files["truncated"].write_bytes((root / "whole.pt").read_bytes()[:5000])
    files["onnx"] = root / "model.onnx"
    files["onnx"].write_bytes(b"\x08\x07\x12\x07pytorch")
    files["stage_field"] = SegmentationModel(tiny_config()).save_pretrained(root / "stage_field")
    config = json.loads((files["stage_field"] / "config.json").read_text())
    config["stages"][2]["mixr"] = "attention"
    (files["stage_field"] / "config.json").write_text(json.dumps(config))

    experiment = {
        "model": {"name": "segformer_b0", "num_classes": 3},
        "data": {"format": "folder", "root": str(files["data"]), "train_split": "train", "val_split": "train",
                 "train_transforms": {"name": "rope_seed", "size": [32, 32]},
                 "val_transforms": {"name": "val", "scale": [64, 48]}, "batch_size": 2, "num_workers": 0},
        "trainer": {"max_steps": 1, "accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                    "enable_model_summary": False},
    }
    files["experiment"] = root / "tiny.yaml"
    files["experiment"].write_text(yaml.safe_dump(experiment))
    for name, last in (("truncated_run", files["truncated"]), ("unsafe_run", files["unsafe"])):
        run = root / name
        (run / "checkpoints").mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump(resolve_config(experiment)))
        (run / "checkpoints" / "last.ckpt").write_bytes(last.read_bytes())
        files[name] = run
    return files


# (name, argv with {placeholders} from ``bad``, what the one line must name)
BAD_INPUTS = [
    ("eval-unsafe-pickle", "eval {unsafe} --data folder:{data}",
     "{unsafe}: it needs unsafe unpickling (Unsupported global: GLOBAL print was not an allowed global by default)"),
    ("eval-truncated", "eval {truncated} --data folder:{data}", "{truncated} could not be read (truncated or"),
    ("eval-onnx", "eval {onnx} --data folder:{data}", "{onnx}: onnxruntime cannot load it"),  # eval runs .onnx files
    ("eval-stage-field", "eval {stage_field} --data folder:{data}",
     "{stage_field}/config.json: unknown stage 2 field(s) ['mixr']"),
    ("eval-sizes", "eval {model} --data folder:{data} --sizes 0,-3", "argument --sizes: expected positive"),
    ("eval-worker-data-error", "eval {model} --data folder:{corrupt_data} --split train --num-workers 2",
     "{corrupt_data}/images/train/b.png: cannot decode"),
    ("train-pretrained-other-arch", "train {experiment} --out {tmp}/run --set model.pretrained={other_arch}",
     "{other_arch}"),
    ("train-pretrained-unsafe", "train {experiment} --out {tmp}/run --set model.pretrained={unsafe}",
     "{unsafe}: it needs unsafe unpickling"),
    ("train-pretrained-truncated", "train {experiment} --out {tmp}/run --set model.pretrained={truncated}",
     "{truncated} could not be read"),
    ("train-pretrained-onnx", "train {experiment} --out {tmp}/run --set model.pretrained={onnx}",
     "{onnx}: unsupported weights file type"),
    ("resume-truncated-last", "train --resume {truncated_run}", "{truncated_run}/checkpoints/last.ckpt could not"),
    ("resume-unsafe-last", "train --resume {unsafe_run}", "{unsafe_run}/checkpoints/last.ckpt: it needs unsafe"),
    ("profile-size", "profile segformer_b0 --size -5 64", "argument --size: must be a positive integer, got '-5'"),
    ("predict-crop", "predict {model} {data}/images/train --out {tmp}/out --mode slide --crop 0 --stride 0",
     "argument --crop: must be a positive integer, got '0'"),
]


def run_cli(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "segformer_lab.cli", *argv], capture_output=True, text=True,
                          env=ENV, timeout=300)


@pytest.mark.parametrize("command, culprit", [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_a_bad_input_is_one_line_naming_it(bad, tmp_path, command, culprit, capsys):
    """In process (one torch import for the table): ``main`` returns 2 instead of raising,
    and the error is the last line of stderr (progress bars and Lightning's notes may
    come before it), one line that names the culprit."""
    names = {**{k: str(v) for k, v in bad.items()}, "tmp": str(tmp_path)}
    argv = command.format(**names).split()
    with pytest.raises(SystemExit) if "argument" in culprit else contextlib.nullcontext() as parsing:
        assert cli.main(argv) == 2
    if parsing:
        assert parsing.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("segformer-lab")]
    assert errors == [err.splitlines()[-1]] and "Traceback" not in err
    assert errors[0].startswith(f"segformer-lab {argv[0]}: error: ")
    assert culprit.format(**names) in errors[0]
    assert "weights_only" not in errors[0] and "safe_globals" not in errors[0]  # torch's advice is not ours
    assert not (tmp_path / "out").exists()  # predict: refused before any image


def test_a_bad_input_is_the_only_line_on_stderr(bad):
    """The real process: exit status 2, nothing on stderr but the one line."""
    result = run_cli(["eval", str(bad["onnx"]), "--data", f"folder:{bad['data']}"])
    assert result.returncode == 2
    assert result.stderr.startswith(f"segformer-lab eval: error: {bad['onnx']}: onnxruntime cannot load it: ")
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n")  # onnxruntime's own words after that


def test_verbose_keeps_the_traceback(bad):
    result = run_cli(["-v", "eval", str(bad["unsafe"]), "--data", f"folder:{bad['data']}"])
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr and "CheckpointError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"segformer-lab eval: error: refusing to load {bad['unsafe']}")


def test_full_disk_is_one_line_and_the_previous_file_kept(bad, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.png").write_bytes(b"previous")

    def full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    image = bad["data"] / "images" / "train" / "a.png"
    # --overwrite: a.png is the user's (predict refuses to replace it otherwise)
    assert cli.main(["predict", str(bad["model"]), str(image), "--out", str(out), "--overwrite"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("segformer-lab predict: error: no space left on /")
    assert lines[-1].endswith(f"while writing {out / 'a.png'}; its previous version, if any, is kept: free space "
                              "there and run again")
    assert (out / "a.png").read_bytes() == b"previous" and sorted(p.name for p in out.iterdir()) == ["a.png"]


def test_a_path_without_permission_is_one_line_naming_it(bad, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"

    def denied(self, fp, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(fp))

    monkeypatch.setattr(Image.Image, "save", denied)
    image = bad["data"] / "images" / "train" / "a.png"
    assert cli.main(["predict", str(bad["model"]), str(image), "--out", str(out)]) == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith(f"segformer-lab predict: error: {out}") and ": permission denied (check the owner" in line
    assert "Errno" not in line


def test_a_bug_keeps_its_traceback(monkeypatch):
    monkeypatch.setattr(cli, "build_parser", lambda command: _Broken())
    with pytest.raises(ZeroDivisionError):
        cli.main(["models"])


class _Broken:
    def parse_args(self, argv):
        return argparse.Namespace(verbose=False, command="models", run=lambda args: 1 / 0)


def test_training_on_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(bad, tmp_path, monkeypatch, capsys):
    """The issue's case: torch.save's own report of a full disk while ``last.ckpt`` is
    rewritten; the run stops with one line and the previous ``last.ckpt`` still loads."""
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        target = Path(f).parent / "last.ckpt"
        if Path(f).name.startswith(".last.ckpt.tmp") and target.exists():
            Path(f).write_bytes(b"half a checkpoint")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    run = tmp_path / "run"
    argv = ["train", str(bad["experiment"]), "--out", str(run), "--set", "trainer.max_steps=3",
            "--set", "checkpoint.every_n_train_steps=1", "--set", "optim.warmup=0"]
    assert cli.main(argv) == 2
    last = run / "checkpoints" / "last.ckpt"
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"segformer-lab train: error: no space left on {mount_point(last)} while writing {last}; its previous "
        "version, if any, is kept: free space there and run again")
    assert torch.load(last, weights_only=True)["global_step"] == 1
    assert not [p.name for p in last.parent.iterdir() if ".tmp" in p.name]


def mount_point(path: Path) -> Path:
    path = path.resolve().parent
    while not os.path.ismount(path):
        path = path.parent
    return path
