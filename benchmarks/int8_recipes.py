"""The INT8 recipe table of docs/deploy.md: every recipe of ``export.RECIPES`` against the
float32 export of the same model, timed in turns in onnxruntime and compared on images.

    python benchmarks/int8_recipes.py RUN_OR_CHECKPOINT --calibrate FORMAT:ROOT
        [--recipes static dynamic ...] [--calib-images 16] [--eval-images 50] [--size 512 512]
        [--repeats 15] [--out DIR]

Exports the float32 file (dynamic shapes) and one INT8 file per recipe into ``--out``
(static recipes calibrated on ``--calib-images`` of the training split through the
model's preprocessing, as ``segformer-lab export --int8 --calibrate`` does), then

- speed: all files timed in turns on one random ``--size`` input, batch 1
  (``bench --onnx``: median ms, and the speed-up over float32 as the median of per-round
  ratios);
- accuracy: on ``--eval-images`` of the validation split (through the model's
  preprocessing, as ``eval``), the share of logit positions whose argmax
  matches float32's, and the largest absolute logit difference.

With ``--profile RECIPE ...``, onnxruntime's profiler (``SessionOptions.enable_profiling``)
then runs float32 and those recipes ``--profile-runs`` times each at ``--size``, in turns,
and the kernel time per operator type is added to the table (where the time goes).

Prints the Markdown tables and writes them with the JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from segformer_lab._io import write_json
from segformer_lab.cli import main as cli
from segformer_lab.engine import dataset_view, eval_preprocessing, load_for_eval
from segformer_lab.export import RECIPES, onnx_session
from segformer_lab.export.calibration import calibration_images
from segformer_lab.analysis.onnx_timing import compare_onnx_files


def agreement(paths: dict[str, Path], images: list[np.ndarray]) -> dict[str, dict[str, float]]:
    sessions = {name: onnx_session(path) for name, path in paths.items()}
    agree = {name: [0, 0] for name in paths}
    diff = dict.fromkeys(paths, 0.0)
    for image in images:
        outputs = {name: s.run(None, {s.get_inputs()[0].name: image})[0] for name, s in sessions.items()}
        reference = outputs["float32"]
        for name, out in outputs.items():
            agree[name][0] += int((out.argmax(1) == reference.argmax(1)).sum())
            agree[name][1] += reference.argmax(1).size
            diff[name] = max(diff[name], float(np.abs(out - reference).max()))
    return {name: {"agreement": a / n, "max_abs_diff": diff[name]} for name, (a, n) in agree.items()}


def profile_ops(paths: dict[str, Path], size: tuple[int, int], runs: int) -> dict[str, dict[str, float]]:
    """Milliseconds per run spent in each operator type's kernels, per file (onnxruntime's
    profiler), the files run in turns; the first round is a warm-up and not counted."""
    import onnxruntime as ort

    sessions = {}
    for name, path in paths.items():
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.profile_file_prefix = str(path.with_suffix(""))
        sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32)
    for _ in range(runs + 1):
        for session in sessions.values():
            session.run(None, {session.get_inputs()[0].name: x})
    profiles = {}
    for name, session in sessions.items():
        events = json.loads(Path(session.end_profiling()).read_text())
        first = min((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
        warm = first["ts"] + first["dur"]
        per_op: Counter = Counter()
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] > warm:
                per_op[event["args"]["op_name"]] += event["dur"]
        profiles[name] = {op: us / 1000 / runs for op, us in per_op.most_common()}
    return profiles


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("--calibrate", required=True, metavar="FORMAT:ROOT")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    p.add_argument("--calib-images", type=int, default=16)
    p.add_argument("--eval-images", type=int, default=50)
    p.add_argument("--size", nargs=2, type=int, default=(512, 512))
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--out", type=Path, default=Path("int8_recipes"))
    p.add_argument("--profile", nargs="*", default=[], choices=list(RECIPES), metavar="RECIPE")
    p.add_argument("--profile-runs", type=int, default=5)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = {"float32": args.out / "float32.onnx"}
    assert cli(["export", args.source, "--onnx", str(paths["float32"])]) == 0
    for recipe in args.recipes:
        paths[recipe] = args.out / f"{recipe}.onnx"
        calibrate = ["--calibrate", args.calibrate, "--calib-images", str(args.calib_images)]
        argv = ["export", args.source, "--onnx", str(paths[recipe]), "--int8", "--int8-recipe", recipe]
        assert cli(argv + (calibrate if RECIPES[recipe].static else [])) == 0
    timed = compare_onnx_files([str(p) for p in paths.values()], tuple(args.size), 1, None, 2, args.repeats)
    model, recipe = load_for_eval(args.source)
    preprocessing, _ = eval_preprocessing(model, recipe, args.source)
    fmt, _, root = args.calibrate.partition(":")
    split = recipe.split("val") if recipe is not None else "validation"
    dataset = dataset_view((fmt, root), split, preprocessing, model.config.num_classes, recipe=recipe)
    scores = agreement(paths, list(calibration_images(dataset, args.eval_images)))
    rows = []
    for (name, path), timing in zip(paths.items(), timed["models"]):
        rows.append({"recipe": name, "description": RECIPES[name].description if name in RECIPES else "float32",
                     "median_ms": timing["median_ms"], "speedup": timing["speedup"],
                     "speedup_q1": 1 / timing["relative_q3"], "speedup_q3": 1 / timing["relative_q1"], **scores[name],
                     "size_mib": path.stat().st_size / 2**20})  # fmt: skip
    lines = [f"{model.config.name}, {args.size[0]}x{args.size[1]} batch 1, onnxruntime {timed['onnxruntime']}, "
             f"{timed['threads']} threads, {args.repeats} rounds in turns; agreement on {args.eval_images} "
             f"validation images of {args.calibrate}", "",
             "| recipe | ms | speed-up vs float32 (quartiles) | argmax agreement | max abs logit diff | MiB |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['recipe']} | {r['median_ms']:.1f} | {r['speedup']:.2f}x ({r['speedup_q1']:.2f}–"
                     f"{r['speedup_q3']:.2f}) | {100 * r['agreement']:.2f}% | {r['max_abs_diff']:.3g} "
                     f"| {r['size_mib']:.1f} |")
    chosen = ["float32", *args.profile] if args.profile else []
    profiles = profile_ops({name: paths[name] for name in chosen}, tuple(args.size), args.profile_runs)
    if profiles:
        ops = sorted({op for p in profiles.values() for op in p}, key=lambda op: -max(p.get(op, 0) for p in
                                                                                    profiles.values()))
        lines += ["", f"kernel ms per run by operator type (onnxruntime profiler, {args.profile_runs} runs in turns)", "",
                  "| operator | " + " | ".join(profiles) + " |", "| --- |" + " --- |" * len(profiles)]
        for op in ops:
            lines.append(f"| {op} | " + " | ".join(f"{p.get(op, 0):.1f}" for p in profiles.values()) + " |")
        lines.append("| **total** | " + " | ".join(f"{sum(p.values()):.1f}" for p in profiles.values()) + " |")
    text = "\n".join(lines)
    print(text)
    (args.out / "table.md").write_text(text + "\n")
    write_json(args.out / "table.json", {"timing": timed, "rows": rows, "profiles": profiles})


if __name__ == "__main__":
    main()
