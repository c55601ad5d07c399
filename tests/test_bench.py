"""The benchmark: small and fast runs; the comparison with transformers must agree."""

import json
import sys

import pytest
import torch

import segformer_lab as sl
from segformer_lab.cli import main
from segformer_lab.tools.bench import benchmark, randomise_batch_norms

FAST = {"size": (64, 64), "warmup": 1, "repeats": 2}


def test_result_keys_and_numbers():
    result = benchmark("segformer_b0", batch=2, **FAST)
    assert result["model"] == "segformer_b0"
    assert result["input"] == [2, 3, 64, 64]
    assert (result["warmup"], result["repeats"]) == (1, 2)
    assert result["ours"]["median_ms"] > 0
    assert result["ours"]["images_per_s"] == pytest.approx(2e3 / result["ours"]["median_ms"])
    assert "transformers" not in result


def test_threads_apply_to_the_call_only():
    before = torch.get_num_threads()
    assert benchmark("segformer_b0", threads=1, **FAST)["threads"] == 1
    assert torch.get_num_threads() == before


def test_compare_with_transformers():
    pytest.importorskip("transformers")
    result = benchmark("segformer_b0", compare_hf=True, **FAST)
    assert result["transformers"]["median_ms"] > 0
    assert result["speedup"] == pytest.approx(result["transformers"]["median_ms"] / result["ours"]["median_ms"])
    assert result["max_abs_diff"] < 1e-4


def test_model_passed_in_is_left_as_it_is():
    pytest.importorskip("transformers")
    model = sl.create_model("segformer_b0")
    randomise_batch_norms(model, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = benchmark(model, compare_hf=True, **FAST)
    assert result["max_abs_diff"] < 1e-4
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_randomise_batch_norms_moves_them_off_the_identity():
    model = sl.create_model("segformer_b0")
    randomise_batch_norms(model)
    bn = model.decode_head.batch_norm
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert not torch.equal(bn.weight, torch.ones_like(bn.weight))


def test_cli_json(capsys):
    argv = ["bench", "segformer_b0", "--size", "64", "64", "--warmup", "0", "--repeats", "2", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["input"] == [1, 3, 64, 64] and result["ours"]["median_ms"] > 0


def test_cli_text_with_compare_hf(capsys):
    pytest.importorskip("transformers")
    argv = ["bench", "segformer_b0", "--size", "64", "64", "--warmup", "0", "--repeats", "2", "--compare-hf"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and "max abs logit difference" in out


def test_cli_without_transformers(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    argv = ["bench", "segformer_b0", "--size", "64", "64", "--repeats", "1", "--compare-hf"]
    assert main(argv) == 2
    assert "pip install 'segformer-lab[test]'" in capsys.readouterr().err


def test_models_compared_in_turns(capsys):
    argv = ["bench", "segformer_b0", "segformer_b0_rope_*", "--size", "64", "64", "--warmup", "0", "--repeats", "2",
            "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    names = [r["model"] for r in result["models"]]
    assert names == ["segformer_b0", "segformer_b0_rope_axial", "segformer_b0_rope_mixed"]
    assert result["models"][0]["relative"] == 1.0
    for r in result["models"]:
        assert r["relative"] == pytest.approx(r["median_ms"] / result["models"][0]["median_ms"])
