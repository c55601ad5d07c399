"""``eval RUN`` on a run stopped (Ctrl-C, a scheduler) before its first validation: the run
has no best weights yet, and the line points to the checkpoint that does work."""

from __future__ import annotations

import yaml

from segformer_lab import cli
from segformer_lab.engine import resolve_config


def test_a_run_without_best_weights_points_to_its_last_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"a checkpoint")
    recipe = {"model": {"name": "segformer_b0", "num_classes": 3}, "data": {"format": "folder", "root": "data"}}
    (run / "config.yaml").write_text(yaml.safe_dump(resolve_config(recipe)))
    assert cli.main(["eval", str(run)]) == 2
    assert capsys.readouterr().err == (
        f"segformer-lab eval: error: {run} holds no best weights yet (the run stopped before its first validation): "
        f"evaluate its last checkpoint, {run / 'checkpoints' / 'last.ckpt'}\n")
