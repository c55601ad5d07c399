"""The benchmark: small and fast runs; the comparison with transformers must agree."""

import json
import sys

import pytest
import torch

import segformer_lab as sl
import segformer_lab.analysis.profiling
from segformer_lab.cli import main
from segformer_lab.analysis.benchmark import TrainingStep, benchmark, randomise_batch_norms, random_batch
from segformer_lab.analysis.timing import relative_rows

FAST = {"size": (64, 64), "warmup": 1, "repeats": 2}


def test_result_keys_and_numbers():
    result = benchmark("segformer_b0", batch=2, **FAST)
    assert result["model"] == "segformer_b0"
    assert result["input"] == [2, 3, 64, 64]
    assert (result["warmup"], result["repeats"]) == (1, 2)
    assert result["ours"]["median_ms"] > 0
    assert result["ours"]["images_per_s"] == pytest.approx(2e3 / result["ours"]["median_ms"])
    assert "transformers" not in result
    # how close to the machine's limit: executed MACs of both images over the median, against
    # a float32 matrix product timed in the same turns
    machine = result["machine"]
    executed = sl.analysis.profiling.count_macs(sl.get_config("segformer_b0"), (64, 64)).total
    assert machine["executed_gmacs"] == pytest.approx(2 * executed / 1e9)
    assert machine["gmac_per_s"] == pytest.approx(machine["executed_gmacs"] * 1e3 / result["ours"]["median_ms"])
    assert machine["sgemm_fraction"] == pytest.approx(machine["gmac_per_s"] / machine["sgemm_gmac_per_s"])
    assert 0 < machine["sgemm_fraction"] < 2


def test_threads_apply_to_the_call_only():
    before = torch.get_num_threads()
    assert benchmark("segformer_b0", threads=1, **FAST)["threads"] == 1
    assert torch.get_num_threads() == before


def test_compare_with_transformers(caplog):
    pytest.importorskip("transformers")
    result = benchmark("segformer_b0", compare_hf=True, **FAST)
    assert "stores no class names" not in caplog.text  # random weights need no names (issue 20, item 6)
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
        assert r["relative_q1"] <= r["relative"] <= r["relative_q3"]


def test_relative_time_is_the_median_ratio_within_rounds():
    """A drift that slows both models in the same rounds leaves their ratio alone."""
    rows = relative_rows({"a": [10.0, 20.0, 40.0, 10.0, 30.0], "b": [11.0, 22.0, 44.0, 12.0, 30.0]}, batch=2)
    assert [r["model"] for r in rows] == ["a", "b"]
    assert rows[1]["relative"] == pytest.approx(1.1)  # ratios 1.1, 1.1, 1.1, 1.2, 1.0
    assert (rows[1]["relative_q1"], rows[1]["relative_q3"]) == (pytest.approx(1.1), pytest.approx(1.1))
    assert rows[1]["median_ms"] == 22.0 and rows[1]["images_per_s"] == pytest.approx(2e3 / 22.0)
    assert relative_rows({"a": [5.0], "b": [6.0]}, 1)[1]["relative"] == pytest.approx(1.2)  # one round


def test_training_steps_against_transformers():
    """Same loss on the same weights and batch; the model passed in is not trained."""
    pytest.importorskip("transformers")
    model = sl.create_model("segformer_b0", num_classes=7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = benchmark(model, train=True, compare_hf=True, size=(64, 64), batch=2, warmup=0, repeats=2)
    assert result["mode"] == "train" and result["input"] == [2, 3, 64, 64]
    assert result["loss_abs_diff"] < 1e-5
    assert result["ours"]["median_ms"] > 0 and result["transformers"]["median_ms"] > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_training_step_updates_the_weights():
    model = sl.create_model("segformer_b0", num_classes=3)
    pixel_values, labels = random_batch((1, 3, 64, 64), 3)
    assert labels.shape == (1, 64, 64) and (labels == 255).any()
    assert ((labels < 3) | (labels == 255)).all()
    step = TrainingStep(model, labels)
    before = model.decode_head.classifier.weight.clone()
    loss = step(pixel_values)
    assert model.training and loss.ndim == 0 and not loss.requires_grad
    assert not torch.equal(before, model.decode_head.classifier.weight)


def test_cli_training_comparison_and_bad_combination(capsys):
    argv = ["bench", "segformer_b0", "boostformer_b0", "--size", "64", "64", "--warmup", "0", "--repeats", "1",
            "--train"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(training steps)" in out and "boostformer_b0" in out
    with pytest.raises(ValueError, match="--onnx times inference only"):
        benchmark("segformer_b0", train=True, onnx=True, **FAST)


def test_models_are_built_with_the_classes_asked_for(capsys):
    """--num-classes sizes the head and the loss as a user's data set has them; a
    checkpoint keeps its own."""
    argv = ["bench", "segformer_b0", "boostformer_b0", "--size", "64", "64", "--warmup", "0", "--repeats", "1",
            "--train", "--num-classes", "3", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["num_classes"] == {"segformer_b0": 3, "boostformer_b0": 3}
    assert benchmark("segformer_b0", num_classes=5, **FAST)["num_classes"] == 5
    with pytest.raises(ValueError, match="a checkpoint keeps its own classes"):
        benchmark(sl.create_model("segformer_b0", num_classes=7), num_classes=5, **FAST)


def test_data_pipeline_throughput_on_a_synthetic_ade20k_tree(tmp_path):
    from segformer_lab.data import build_dataset
    from segformer_lab.analysis.data_throughput import data_throughput, write_synthetic_ade20k

    root = write_synthetic_ade20k(tmp_path, count=3)
    assert len(list((root / "images" / "training").glob("*.jpg"))) == 3
    dataset = build_dataset("ade20k", root, "training", transforms="segformer_ade")
    assert dataset[0]["pixel_values"].shape == (3, 512, 512)  # the real loading path, cropped to 512
    result = data_throughput(dataset, samples=4, warmup=1)
    assert result["samples"] == 4 and result["load_ms"] > 0 and result["transform_ms"] > 0
    assert result["images_per_s"] == pytest.approx(1e3 / result["mean_ms"])
    with pytest.raises(ValueError, match="samples >= 1"):
        data_throughput(dataset, samples=0)


def test_cli_data_bench(tmp_path, capsys):
    from segformer_lab.analysis.data_throughput import write_synthetic_ade20k

    root = write_synthetic_ade20k(tmp_path, count=2)
    assert main(["bench", "--data", f"ade20k:{root}", "--repeats", "2", "--warmup", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pipeline"] == "segformer_ade" and result["images_per_s"] > 0
    assert main(["bench", "--data", "nowhere", "--repeats", "1"]) != 0
    assert "FORMAT:PATH" in capsys.readouterr().err
    assert main(["bench", "segformer_b0", "--data"]) != 0
    assert "give no model" in capsys.readouterr().err


def test_compare_hf_refuses_models_transformers_cannot_express(capsys):
    """transformers' SegFormer would load a RoPE model's weights and silently run it
    without RoPE: refused, naming what differs."""
    pytest.importorskip("transformers")
    with pytest.raises(ValueError, match=r"no transformers equivalent.*stage 0: pos_encoding='mixed'"):
        benchmark("segformer_b0_rope_mixed", compare_hf=True, **FAST)
    assert main(["bench", "boostformer_b0", "--size", "64", "64", "--repeats", "1", "--train", "--compare-hf"]) == 2
    assert "mixer='pooling'" in capsys.readouterr().err
