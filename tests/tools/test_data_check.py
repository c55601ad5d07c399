"""``segformer-lab data check`` and ``data show`` from the command line."""

import json

import numpy as np
import pytest
from datasets_on_disk import H, W, folder_mask, make_cityscapes, make_folder
from PIL import Image

from segformer_lab import cli


def test_check_prints_config_and_json_and_exits_zero(tmp_path, capsys):
    root = make_folder(tmp_path, {"a": folder_mask(), "b": folder_mask()})
    out = tmp_path / "reports" / "check.json"
    assert cli.main(["data", "check", f"folder:{root}", "--json", str(out), "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert "train: 2 samples, 2 ok; masks: L 2 (PNG 2)" in captured.out
    assert "  data:\n    format: folder\n" in captured.out and "    num_classes: 3" in captured.out
    assert "train: [" in captured.err and "2/2" in captured.err  # the progress bar, on stderr
    report = json.loads(out.read_text())
    assert report["ok"] and report["class_names"] == ["sky", "road", "car"]
    assert report["splits"]["train"]["labels"] == {"0": 1400, "1": 1400, "2": 1400, "255": 600}
    assert not list(out.parent.glob("*.tmp*"))  # written atomically


def test_check_exits_non_zero_on_a_convention_mistake(tmp_path, capsys):
    mask = np.zeros((H, W), np.uint8)
    mask[:, 30:] = 255
    root = make_folder(tmp_path, {"a": mask}, classes=("background", "object"))
    assert cli.main(["data", "check", f"folder:{root}"]) == 1
    out = capsys.readouterr().out
    assert "ERROR [train] binary masks stored as 0/255" in out and out.rstrip().endswith("1 error(s)")


def test_check_options_reach_the_dataset(tmp_path, capsys):
    root = make_folder(tmp_path, {"a": folder_mask()})
    assert cli.main(["data", "check", f"folder:{root}", "--reduce-zero-label", "--split", "train"]) == 1
    assert "0 looks like a class" in capsys.readouterr().out
    assert cli.main(["data", "check", f"cityscapes:{make_cityscapes(tmp_path)}", "--num-classes", "19"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["data", "check", "nonsense"], "expected FORMAT:ROOT"),
    (["data", "check", "mp4:/x"], "unknown format 'mp4'"),
])
def test_check_bad_source_is_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_show_writes_a_grid_with_a_legend(tmp_path, capsys):
    root = make_folder(tmp_path, {f"s{i}": folder_mask() for i in range(5)})
    assert cli.main(["data", "show", f"folder:{root}", "--out", str(tmp_path / "show"), "--n", "3",
                     "--tile", "64"]) == 0
    path = tmp_path / "show" / "train.png"
    assert capsys.readouterr().out.strip() == str(path)
    grid = np.array(Image.open(path))
    assert grid.shape[0] == 6 + 64 + 6 + 16 and grid.shape[1] > 3 * (64 + 6)  # one row of three, legend beside
    legend = grid[:, 3 * 70 + 6:]
    assert (legend != 255).any()  # swatches and names drawn


def test_show_after_the_training_transforms(tmp_path, capsys):
    root = make_folder(tmp_path, {"a": folder_mask()})
    out = tmp_path / "aug"
    assert cli.main(["data", "show", f"folder:{root}", "--out", str(out), "--transforms", "rope_seed",
                     "--tile", "48"]) == 0
    grid = np.array(Image.open(out / "train.png"))
    drawn = (grid[:, :60] != 255).any(axis=2)  # the first cell: rope_seed resizes 60x40 to 512x512
    assert drawn[6:54, 6:54].all() and not drawn[55:60, 6:54].any() and not drawn[6:54, 55:60].any()
    capsys.readouterr()
    assert cli.main(["data", "show", f"folder:{root}", "--out", str(out), "--transforms", "nope"]) == 2
    assert "segformer-lab data show: error: unknown transforms 'nope'" in capsys.readouterr().err


def test_scenes_is_still_a_data_action(capsys):
    with pytest.raises(SystemExit):
        cli.main(["data", "scenes", "--help"])
    assert "--out DIR" in capsys.readouterr().out
