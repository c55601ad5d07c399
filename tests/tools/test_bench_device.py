"""bench on a device and in a precision: options, errors, compile failures, peak memory.

No GPU here: the CUDA paths (events, max_memory_allocated) run unchanged on one; these
tests cover the CPU, bf16 included, and the refusals."""

import json

import pytest
import torch

import segformer_lab as sl
from segformer_lab.cli import main
from segformer_lab.analysis import device as dev
from segformer_lab.inference.devices import resolve_device
from segformer_lab.analysis.benchmark import TrainingStep, benchmark, random_batch

SMALL = {"size": (32, 32), "warmup": 0, "repeats": 1}
MIB = 2**20


def shallow_b0():
    return sl.create_model(config=sl.create_model("segformer_b0").config.with_stages(depth=1))


def test_result_carries_device_precision_versions_and_memory():
    result = benchmark(shallow_b0(), precision="bf16", **SMALL)
    assert (result["device"], result["precision"], result["compile"]) == ("cpu", "bf16", None)
    assert result["torch"] == torch.__version__ and "cuda" in result and result["device_name"]
    assert result["ours"]["peak_memory_mib"] > 0 and "peak memory" in result["memory"]


def test_transformers_runs_in_the_same_precision(capsys):
    pytest.importorskip("transformers")
    argv = ["bench", "segformer_b0", "--size", "32", "32", "--warmup", "0", "--repeats", "1", "--compare-hf",
            "--precision", "bf16", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["precision"] == "bf16" and result["transformers"]["peak_memory_mib"] > 0
    assert 1e-6 < result["max_abs_diff"] < 5e-2  # both in bf16: not float32's agreement, not unrelated
    assert result["memory_ratio"] == pytest.approx(
        result["ours"]["peak_memory_mib"] / result["transformers"]["peak_memory_mib"])


def test_text_output_names_the_setting(capsys):
    argv = ["bench", "segformer_b0", "--size", "32", "32", "--warmup", "0", "--repeats", "1", "--precision", "bf16"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "bf16, eager, torch" in out and "MiB" in out and "(peak memory:" in out


def test_cuda_without_cuda_is_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["bench", "segformer_b0", "--device", "cuda", "--repeats", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA device" in err and "use --device cpu" in err
    with pytest.raises(dev.DeviceError, match="not a device"):
        resolve_device("gpu")


def test_unsupported_precision_is_one_line(monkeypatch):
    def no_half(*args, **kwargs):
        raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'\nmore lines')

    monkeypatch.setattr(dev, "autocast", no_half)
    with pytest.raises(dev.DeviceError, match=r"--precision fp16 does not run on cpu here \(RuntimeError: .*Half'\)"):
        dev.check_precision(torch.device("cpu"), "fp16")


def test_onnx_refuses_other_devices_and_precisions():
    with pytest.raises(ValueError, match="float32 eager PyTorch on the CPU"):
        benchmark("segformer_b0", onnx=True, precision="bf16", **SMALL)


def test_training_steps_in_low_precision():
    model = sl.create_model("segformer_b0", num_classes=3)
    pixel_values, labels = random_batch((1, 3, 32, 32), 3)
    before = model.decode_head.classifier.weight.clone()
    step = TrainingStep(model, labels, precision="bf16")
    assert step.scaler is None and torch.isfinite(step(pixel_values))
    assert not torch.equal(before, model.decode_head.classifier.weight)
    assert TrainingStep(model, labels, precision="fp16").scaler is not None  # float16 needs a gradient scaler
    result = benchmark(model, train=True, precision="bf16", batch=1, **SMALL)
    assert result["mode"] == "train" and result["ours"]["peak_memory_mib"] > dev.tensor_bytes(model) / MIB


def test_compiled_run(capsys):
    result = benchmark(shallow_b0(), compile={"backend": "eager"}, **SMALL)  # dynamo without inductor: fast
    assert result["compile"] == {"backend": "eager"} and result["ours"]["median_ms"] > 0


def test_compile_failure_stops_the_reference_and_leaves_out_the_others(capsys):
    def fail(*args):
        raise RuntimeError("no kernel for you\nsecond line")

    def fine(x):
        return x

    kept, failed = dev.first_calls({"a": fine, "b": fail, "c": fine}, torch.zeros(1), compiling=True)
    assert list(kept) == ["a", "c"] and failed == {"b": "--compile failed for b: RuntimeError: no kernel for you"}
    assert capsys.readouterr().err == "segformer-lab bench: --compile failed for b: RuntimeError: no kernel for you; " \
                                      "left out of the comparison\n"
    with pytest.raises(dev.DeviceError, match="--compile failed for a: .*; run without --compile"):
        dev.first_calls({"a": fail, "b": fine}, torch.zeros(1), compiling=True)
    with pytest.raises(RuntimeError, match="no kernel"):  # not compiling: a bug, raised as it is
        dev.first_calls({"a": fail}, torch.zeros(1), compiling=False)


def test_cpu_peak_memory_is_per_call_not_the_process_high_water_mark():
    """A large allocation earlier in the process does not show in a later, smaller call
    (``ru_maxrss`` would report it forever); the kept tensors are added."""
    cpu = torch.device("cpu")

    def allocate(mib):
        return lambda _: torch.ones(mib * MIB // 4).sum()

    big = dev.peak_memory_mib(allocate(256), None, cpu, kept_bytes=0)
    if big is None:
        pytest.skip("no /proc/self/clear_refs here")
    small = dev.peak_memory_mib(allocate(32), None, cpu, kept_bytes=8 * MIB)
    assert 240 <= big <= 300
    assert 38 <= small <= 60  # 32 MiB allocated + 8 MiB kept, and a little allocator overhead
