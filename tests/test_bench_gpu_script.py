"""benchmarks/bench_gpu.py (``make bench-gpu``): the GPU table's plan, its time budget, and
the small CPU version end to end (``--quick``, about 30 s here)."""

import importlib.util
import json
import os
import subprocess
import sys

import torch

from helpers import REPO

SCRIPT = REPO / "benchmarks" / "bench_gpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_plan_holds_the_issue_table_targets_first():
    script = load_script()
    rows = script.gpu_plan()
    assert len(rows) == len(set(rows))
    want = {(m, 512) for m in ("segformer_b0", "segformer_b1", "segformer_b2", "segformer_b3", "segformer_b4",
                               "segformer_b5", "boostformer_b0", "boostformer_b2", "segformer_b0_rope_axial")}
    want.add(("segformer_b5", 640))
    inference = [r for r in rows if not r.train]
    for model, size in want:
        cells = {(r.batch, r.precision, r.compiled) for r in inference if (r.model, r.size) == (model, size)}
        assert cells == {(b, p, c) for b in (1, 16) for p in ("fp32", "bf16") for c in (False, True)}, model
        assert all(r.compare_hf == (model in ("segformer_b0", "segformer_b2")) for r in inference if r.model == model)
    training = {(r.model, r.size, r.batch, r.precision, r.compare_hf) for r in rows if r.train}
    assert training == {("segformer_b0", 512, 8, "bf16", True), ("segformer_b2", 512, 8, "bf16", True)}
    assert rows[0] == script.Row("segformer_b0", 512, 1, "bf16", compare_hf=True)  # the first target
    assert rows[2].train and rows[2].model == "segformer_b2"  # the memory target


def test_rows_that_do_not_fit_the_budget_are_skipped_and_said(capsys):
    script = load_script()
    rows = [script.Row("segformer_b5", 640, 16, "bf16", compiled=True)]
    (record,) = script.run_plan(rows, torch.device("cpu"), budget=5.0, rounds=(0, 1))
    assert record["status"] == "skipped" and record["reason"].startswith("predicted")
    assert "skipped  segformer_b5 640x640 batch 16 bf16 compiled" in capsys.readouterr().out
    model = script.TimeModel("cpu")
    small, large = script.Row("segformer_b0", 64, 1, "fp32"), script.Row("segformer_b0", 128, 2, "fp32")
    assert model.predict(large) > model.predict(small)
    model.update(small, 10.0)  # slower than the prior: predictions follow
    assert model.predict(small) == 10.0


# Runs the script as the GPU machine's bare interpreter would (issue 22, item 5): the project
# on PYTHONPATH, albumentations unimportable (None in sys.modules), and at the end, which of
# the project's heavy modules it loaded.
BARE = """
import runpy, sys
sys.modules["albumentations"] = None
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    heavy = ("segformer_lab.data.datasets", "segformer_lab.data.transforms", "segformer_lab.engine.config",
             "segformer_lab.engine.experiment")
    print("loaded:", [m for m in heavy if m in sys.modules])
"""


def test_cpu_version_end_to_end_without_albumentations(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", BARE, str(SCRIPT), "--quick", "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("loaded: []")
    assert done.stdout.startswith("device: ") and "no CUDA, running the small CPU version" in done.stdout
    report = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert report["environment"]["device"] == "cpu" and report["environment"]["torch"] == torch.__version__
    first = report["rows"][0]
    assert first["status"] == "measured" and first["compare_hf"]
    assert first["result"]["ours"]["median_ms"] > 0 and first["result"]["ours"]["peak_memory_mib"] > 0
    assert first["result"]["transformers"]["median_ms"] > 0 and first["result"]["max_abs_diff"] < 1e-4
    compiled = [r for r in report["rows"] if r["compiled"]]
    assert compiled and all(r["status"] == "skipped" and "predicted" in r["reason"] for r in compiled)
    table = (tmp_path / "bench_gpu.md").read_text()
    assert "| model | input | batch | precision | mode | ms | img/s | anchor FPS: paper / mmseg | peak MiB |" in table
    assert "| segformer_b0 | 64x64 | 1 | fp32 | eager |" in table and "Not measured:" in table
