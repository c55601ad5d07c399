"""More of the user's mistakes and the machine's faults that must be one line naming the culprit
(exit 2; ``-v`` for the traceback): a read-only file system on every command that writes,
devices this machine lacks, inference options no image could run with. The tiny model,
dataset and experiment are ``test_cli``'s ``bad`` fixture."""

from __future__ import annotations

import contextlib
import errno
import subprocess

import pytest
import torch
from PIL import Image
from test_cli import bad  # noqa: F401 - the fixture

import segformer_lab as sl
from segformer_lab import cli

READ_ONLY = ": read-only file system (choose a path on a writable file system)"


def fails_in_one_line(argv: list[str], capsys) -> str:
    """Runs ``argv``: exit status 2 (from ``main`` or the parser), and the one line."""
    parser_refuses = any(a.startswith("--scales") for a in argv)
    with pytest.raises(SystemExit) if parser_refuses else contextlib.nullcontext() as parsing:
        assert cli.main(argv) == 2
    if parsing:
        assert parsing.value.code == 2
    return one_error(capsys, command_name(argv))


def command_name(argv: list[str]) -> str:
    """How the error line names the command: ``data check``, ``eval``..."""
    return " ".join(argv[:2]) if argv[0] == "data" else argv[0]


def one_error(capsys, command: str) -> str:
    """The last line of stderr, checked to be the only ``segformer-lab`` line and no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("segformer-lab")]
    assert errors == [err.splitlines()[-1]] and "Traceback" not in err, err
    assert errors[0].startswith(f"segformer-lab {command}: error: ")
    return errors[0]


# ----------------------------------------------------------------------------- a read-only file system


@pytest.fixture(scope="module")
def read_only(tmp_path_factory):
    """A read-only bind mount holding an empty folder ``existing`` (needs root and mount;
    skipped elsewhere: ``test_a_simulated_read_only_file_system`` runs everywhere)."""
    source = tmp_path_factory.mktemp("source")
    (source / "existing").mkdir()
    mount = tmp_path_factory.mktemp("read_only")
    if subprocess.run(["mount", "--bind", str(source), str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount here")
    if subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], capture_output=True).returncode:
        subprocess.run(["umount", str(mount)], check=True)
        pytest.skip("cannot remount read-only here")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


# (name, argv with {placeholders}, the path the line must name): {ro}/new is a folder a
# command must create, {ro}/existing one it writes into
WRITERS = [
    ("export-onnx", "export {model} --onnx {ro}/new.onnx --no-check", "{ro}/new.onnx"),
    ("export-transformers", "export {model} --transformers {ro}/new", "{ro}/new"),
    ("export-transformers-existing", "export {model} --transformers {ro}/existing", "{ro}/existing/"),
    ("predict-out", "predict {model} {image} --out {ro}/new", "{ro}/new"),
    ("predict-out-existing", "predict {model} {image} --out {ro}/existing --overlay", "{ro}/existing/a"),
    ("train-out", "train {experiment} --out {ro}/new", "{ro}/new"),
    ("train-out-existing", "train {experiment} --out {ro}/existing", "{ro}/existing/"),
    ("data-check-json", "data check folder:{data} --json {ro}/existing/check.json", "{ro}/existing/check.json"),
    ("eval-json", "eval {model} --data folder:{data} --split train --json {ro}/eval.json", "{ro}/eval.json"),
    ("eval-plots", "eval {model} --data folder:{data} --split train --plots {ro}/new", "{ro}/new"),
    ("eval-plots-existing", "eval {model} --data folder:{data} --split train --plots {ro}/existing",
     "{ro}/existing/confusion.png"),
    ("data-show", "data show folder:{data} --out {ro}/new", "{ro}/new"),
    ("data-show-existing", "data show folder:{data} --out {ro}/existing", "{ro}/existing/train.png"),
]


@pytest.mark.parametrize("command, culprit", [case[1:] for case in WRITERS], ids=[case[0] for case in WRITERS])
def test_a_read_only_file_system_is_one_line(bad, read_only, command, culprit, capsys):  # noqa: F811
    names = {**{k: str(v) for k, v in bad.items()}, "ro": str(read_only),
             "image": str(bad["data"] / "images" / "train" / "a.png")}
    argv = command.format(**names).split()
    assert cli.main(argv) == 2
    line = one_error(capsys, command_name(argv))
    assert line.startswith(f"segformer-lab {command_name(argv)}: error: {culprit.format(**names)}")
    assert line.endswith(READ_ONLY)


@pytest.mark.parametrize("folder", ["new", "existing"])
def test_save_pretrained_on_a_read_only_file_system_is_one_error(bad, read_only, folder):  # noqa: F811
    model = sl.load_model(bad["model"])
    with pytest.raises(OSError) as info:
        model.save_pretrained(read_only / folder)
    assert info.value.errno == errno.EROFS and info.value.filename.startswith(str(read_only / folder))
    assert info.value.__context__ is info.value.__cause__  # no second failure (the clean-up's) chained to it


def test_a_simulated_read_only_file_system(bad, tmp_path, monkeypatch, capsys):  # noqa: F811
    """Where nothing can be mounted: the writer's EROFS, as on a read-only mount."""
    def refused(self, fp, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(fp))

    monkeypatch.setattr(Image.Image, "save", refused)
    out = tmp_path / "out"
    assert cli.main(["predict", str(bad["model"]), str(bad["data"] / "images" / "train" / "a.png"),
                     "--out", str(out)]) == 2
    assert one_error(capsys, "predict") == f"segformer-lab predict: error: {out / 'a.png'}{READ_ONLY}"
    assert list(out.iterdir()) == []


# ----------------------------------------------------------------------------- devices and inference options

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")

# (name, argv with {placeholders}, the one line after "error: "), checked before any image
OPTIONS = [
    pytest.param("predict {model} {image} --out {tmp}/out --mode slide --crop 16",
                 "crop 16: a window's sides must be >= 32, the model's smallest input", id="predict-crop-16"),
    pytest.param("predict {model} {image} --out {tmp}/out --mode slide --stride 100 --crop 64",
                 "need 1 <= stride <= crop, got stride 100 for crop 64 (a larger stride leaves pixels no window "
                 "covers)", id="predict-stride-over-crop"),
    pytest.param("predict {model} {image} --out {tmp}/out --scales 0",
                 "argument --scales: must be in (0, 8], got '0'", id="predict-scales-0"),
    pytest.param("predict {model} {image} --out {tmp}/out --scales 1 nan",
                 "argument --scales: must be in (0, 8], got 'nan'", id="predict-scales-nan"),
    pytest.param("predict {model} {image} --out {tmp}/out --scales=-1", "argument --scales: must be in (0, 8], "
                 "got '-1'", id="predict-scales-negative"),
    pytest.param("predict {model} {image} --out {tmp}/out --scales inf", "argument --scales: must be in (0, 8], "
                 "got 'inf'", id="predict-scales-inf"),
    pytest.param("eval {model} --data folder:{data} --split train --scales inf", "argument --scales: must be in "
                 "(0, 8], got 'inf'", id="eval-scales-inf"),
    pytest.param("eval {model} --data folder:{data} --split train --scales 1e6", "argument --scales: must be in "
                 "(0, 8], got '1e6'", id="eval-scales-huge"),
    pytest.param("eval {model} --data folder:{data} --split train --mode slide --crop 16",
                 "crop 16: a window's sides must be >= 32", id="eval-crop-16"),
    pytest.param("predict {model} {image} --out {tmp}/out --device tpu9",
                 "device 'tpu9' is not a device; use cpu, cuda or cuda:N", id="predict-device-tpu9"),
    pytest.param("eval {model} --data folder:{data} --split train --device tpu9",
                 "device 'tpu9' is not a device; use cpu, cuda or cuda:N", id="eval-device-tpu9"),
    pytest.param("eval {model} --data folder:{data} --split train --device cuda",
                 "device 'cuda': this machine has no CUDA device", id="eval-device-cuda", marks=NO_CUDA),
    pytest.param("predict {model} {image} --out {tmp}/out --device cuda:0",
                 "device 'cuda:0': this machine has no CUDA device", id="predict-device-cuda", marks=NO_CUDA),
    pytest.param("eval {onnx_b0} --data folder:{data} --split train --device cuda",
                 "device 'cuda': ONNX files run in onnxruntime on the CPU here; use --device cpu",
                 id="eval-onnx-device-cuda"),
    pytest.param("train {experiment} --out {tmp}/run --set trainer.accelerator=gpu",
                 "trainer (accelerator='gpu', devices=1, strategy='auto'): Lightning cannot run it here: ",
                 id="train-accelerator-gpu", marks=NO_CUDA),
]


@pytest.mark.parametrize("command, message", OPTIONS)
def test_a_device_or_option_no_image_could_run_with_is_one_line(bad, exported_b0, tmp_path, command,  # noqa: F811
                                                                 message, capsys):
    names = {**{k: str(v) for k, v in bad.items()}, "tmp": str(tmp_path), "onnx_b0": str(exported_b0[1]),
             "image": str(bad["data"] / "images" / "train" / "a.png")}
    argv = command.format(**names).split()
    line = fails_in_one_line(argv, capsys)
    assert line.startswith(f"segformer-lab {command_name(argv)}: error: {message}"), line
    assert not (tmp_path / "out").exists() and not (tmp_path / "run").exists()


def test_the_python_api_checks_the_same(bad):  # noqa: F811
    with pytest.raises(ValueError, match=r"^scale inf: scales must be in \(0, 8\]$"):
        sl.Segmenter(bad["model"], scales=(1.0, float("inf")))
    with pytest.raises(ValueError, match="^device 'tpu9' is not a device"):
        sl.Segmenter(bad["model"], device="tpu9")
