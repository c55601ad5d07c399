"""``segformer-lab study rope``: the paired initialisation, and the --quick form end to end
(made smaller still: two variants, 2 steps, a few images), continued when run again."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from segformer_lab import cli
from segformer_lab.tools.demo.recipe import load_recipe
from segformer_lab.tools.study.variants import BY_NAME, VARIANTS, initialisation, select


def test_every_variant_starts_from_its_baselines_weights():
    """Seed k: each variant's tensors of the same name and shape as its baseline's are the
    baseline's seed-k values (mixed RoPE draws its frequencies first, which would otherwise
    shift every later weight); another seed gives other values."""
    base = load_recipe()
    models = {v.name: initialisation(base, v, seed=3).state_dict() for v in VARIANTS}
    for variant in VARIANTS[1:]:
        own, reference = models[variant.name], models[variant.baseline]
        shared = [k for k in own if k in reference and own[k].shape == reference[k].shape]
        assert len(shared) > 50, variant.name
        assert all(torch.equal(own[k], reference[k]) for k in shared), variant.name
    mixed = models["segformer_b0_rope_mixed_centre"]
    assert any("frequencies" in k or "freqs" in k for k in set(mixed) - set(models["segformer_b0"]))
    other = initialisation(base, BY_NAME["segformer_b0"], seed=4).state_dict()
    assert not torch.equal(other["decode_head.classifier.weight"], models["segformer_b0"]["decode_head.classifier.weight"])


def test_variants_bring_their_baselines_and_unknown_names_are_refused():
    assert [v.name for v in select(["boostformer_b0_rope_mixed_centre"], ())] == [
        "segformer_b0", "boostformer_b0", "boostformer_b0_rope_mixed_centre"]
    with pytest.raises(ValueError, match="unknown study variant.*segformer_b9"):
        select(["segformer_b9"], ())


def test_quick_study_reports_intervals_and_continues(tmp_path, capsys):
    out = tmp_path / "study"
    args = ["study", "rope", "--out", str(out), "--quick", "--steps", "2", "--train-images", "8", "--val-images", "2",
            "--variants", "segformer_b0_rope_axial_centre", "--control-variants", "segformer_b0", "--threads", "1",
            "--no-progress"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert first.count("] trained ") == 6  # 2 seeds x (baseline + variant on the scenes, baseline on the control)
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 6 * 3 and set(results["runs"][0]) == {"variant", "seed", "dataset", "size", "mIoU"}
    assert {r["size"] for r in results["runs"]} == {128, 256, 384}
    entry = next(e for e in results["summary"] if e["variant"] == "segformer_b0_rope_axial_centre" and e["size"] == 384)
    low, high = entry["ci95"]
    assert low <= entry["mean"] <= high and entry["n"] == 2
    assert entry["paired_difference"]["baseline"] == "segformer_b0"
    assert len(entry["paired_difference"]["ci95"]) == 2
    report = (out / "report.md").read_text()
    assert "## scenes_position_free" in report and ("within noise" in report or "resolved" in report)
    assert (out / "paired_differences.png").stat().st_size > 0 and not any((out / "init").iterdir())
    run = out / "runs" / "scenes" / "segformer_b0-seed0"
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["limit_val_batches"] == 0
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]  # never validated: no best

    assert cli.main(args) == 0  # again: every run reused, the same results
    again = capsys.readouterr().out
    assert again.count("] reused ") == 6 and "trained" not in again
    assert json.loads((out / "results.json").read_text())["runs"] == results["runs"]
