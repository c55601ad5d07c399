"""``diagnose``: a dataset checked split by split (``check_dataset``), the label conventions
it follows or breaks, and the config lines that train on it (``segformer-lab data check``).

Errors are what makes training fail or silently learn the wrong thing: unreadable or
unpaired files, sizes that differ, values out of range, colour masks read without a
palette, binary masks stored as 0/255 (255 is the ignore index: the foreground is never
learned), masks saved as JPEG, and ``reduce_zero_label`` set against the data (0 used as
a class and dropped, or classes numbered from 1 with 0 never used). Warnings are worth a
look but train: classes never present, 16-bit masks whose values fit 8 bits, masks
without an image, values found only along edges (a mask once saved lossily).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .datasets import DATASETS, DataReport, SegmentationDataset, build_dataset, check_dataset
from .datasets.folder import FolderDataset
from .io import IGNORE_INDEX, DataError, DataWarning
from .palettes import colour_name, match_palettes

MAX_NAMED = 10  # files named per finding in the text report (the JSON has them all)
PALETTE_MATCH = 0.99  # share of colour-mask pixels a known palette must know to be advised
EDGE_SHARE = 0.02  # a value with fewer of its pixels inside regions (equal to 4 neighbours) lies on edges only
EDGE_VALUES = 3  # this many edge-only values in a split: a lossy mask, not a thin class

# reason in a DataError -> what the finding calls it (first match wins)
REASONS = (
    ("missing annotation", "images without a mask"),
    ("cannot decode", "unreadable files"),
    ("not found", "unreadable files"),
    ("differs from image size", "mask and image sizes differ"),
    ("out of range", "label values out of range"),
    ("16-bit mask", "16-bit masks with values above 255"),
    ("not in palette", "colours not in the palette"),
)


@dataclass
class Finding:
    """One problem: ``level`` "error" (training fails or learns the wrong thing) or
    "warning"; the split, what is wrong and what to do, and the files concerned."""

    level: str
    split: str
    message: str
    files: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        head = f"{self.level.upper()} [{self.split}] {self.message}"
        shown = [f"    {f}" for f in self.files[:MAX_NAMED]]
        if len(self.files) > MAX_NAMED:
            shown.append(f"    ... and {len(self.files) - MAX_NAMED} more (all in --json)")
        return [head, *shown]


@dataclass
class Diagnosis:
    """What ``diagnose`` found: a report per split, the findings, and the config to train with."""

    format: str
    root: str
    reports: dict[str, DataReport] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    def add(self, level: str, split: str, message: str, files: list[str] | None = None) -> None:
        self.findings.append(Finding(level, split, message, list(files or [])))

    def to_dict(self) -> dict[str, Any]:
        splits = {name: {"samples": r.total, "ok": r.ok, "bad": r.bad, "mask_modes": dict(r.modes),
                         "mask_formats": dict(r.formats), "values": _histogram(r.values),
                         "labels": _histogram(r.labels),
                         "colours": {colour_name(k): n for k, n in r.colours.most_common()}}
                  for name, r in self.reports.items()}
        return {"format": self.format, "root": self.root, "ok": self.ok, "splits": splits,
                "class_names": self.class_names, "config": self.config,
                "findings": [vars(f) for f in self.findings]}

    def lines(self) -> list[str]:
        out = []
        for name, r in self.reports.items():
            modes = ", ".join(f"{m} {n}" for m, n in r.modes.most_common())
            formats = ", ".join(f"{m} {n}" for m, n in r.formats.most_common())
            out.append(f"{name}: {r.total} samples, {r.ok} ok; masks: {modes or '-'} ({formats or '-'})")
            out.append(f"  values in the files: {_summary(r.values) if r.values.any() else '-'}"
                       + (f"; {len(r.colours)} colours" if r.colours else ""))
            out.append(f"  training labels: {_summary(r.labels, self.class_names) if r.labels.any() else '-'}")
        for finding in self.findings:
            out.extend(finding.lines())
        out.append("config lines to use:" if self.ok else "config lines to use, once the errors are fixed:")
        out.extend(f"  {line}" for line in config_lines(self.config))
        out.append("OK" if self.ok else f"{sum(f.level == 'error' for f in self.findings)} error(s)")
        return out


def _histogram(counts: np.ndarray) -> dict[str, int]:
    return {str(v): int(counts[v]) for v in np.flatnonzero(counts)}


def _summary(counts: np.ndarray, names: Sequence[str] = (), top: int = 12) -> str:
    """``value: share%`` of the most frequent values, in value order; with the classes'
    ``names``, ``name share%`` (``ignore`` for the ignore index)."""
    total = counts.sum()
    present = np.flatnonzero(counts)
    shown = sorted(sorted(present, key=lambda v: -counts[v])[:top])

    def label(v: int) -> str:
        if not names:
            return f"{v}:"
        return "ignore" if v == IGNORE_INDEX else names[v] if v < len(names) else f"{v} (no class):"

    text = ", ".join(f"{label(v)} {100 * counts[v] / total:.1f}%" for v in shown)
    return text + (f" (+{present.size - top} more values)" if present.size > top else "")


def config_lines(config: dict[str, Any]) -> list[str]:
    """The experiment-config lines (YAML) of ``Diagnosis.config``."""
    options = ", ".join(f"{k}: {v}" for k, v in config.get("options", {}).items())
    return ["data:", f"  format: {config['format']}", f"  root: {config['root']}",
            f"  options: {{{options}}}", "model:", f"  num_classes: {config['num_classes']}",
            f"# ignore index: {IGNORE_INDEX} (mask value {IGNORE_INDEX} is neither trained on nor scored)"]


def diagnose(format: str, root: str | Path, *, splits: list[str] | None = None, num_classes: int | None = None,
             options: dict[str, Any] | None = None, workers: int = 1,
             progress: Callable[[str, int, int], None] | None = None) -> Diagnosis:
    """Check every split of the dataset ``format:root`` and diagnose its conventions.
    ``options`` are the dataset's (``reduce_zero_label``, ``palette``...); ``progress(split,
    done, total)`` is called as samples finish."""
    cls = DATASETS.get(format)
    if cls is None:
        raise ValueError(f"unknown dataset format {format!r}; choose from {sorted(DATASETS)}")
    if not issubclass(cls, SegmentationDataset):
        raise ValueError(f"data check reads segmentation datasets; {format!r} is not one")
    options = dict(options or {})
    splits = splits or cls.splits(root)
    if not splits:
        raise DataError(str(root), f"no splits found for format {format!r} (see its layout in docs/training.md)")
    inferred = (issubclass(cls, FolderDataset) and cls is FolderDataset and num_classes is None
                and "classes" not in options and "palette" not in options
                and not (Path(root) / "classes.txt").is_file())
    if inferred:  # every value 0..254 is accepted; num_classes is advised from the values found
        options["classes"] = [f"class_{i}" for i in range(IGNORE_INDEX)]
    result = Diagnosis(format, str(root))
    datasets: dict[str, SegmentationDataset] = {}
    for split in splits:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)
                dataset = build_dataset(format, root, split, num_classes=num_classes, skip_bad=True, **options)
                constructed = dict(dataset.bad_files)
                dataset.skip_bad = False  # report every bad sample; remove none
                report = check_dataset(dataset, raise_errors=False, workers=workers,
                                       progress=None if progress is None else
                                       lambda done, total, split=split: progress(split, done, total))
        except DataError as error:
            result.add("error", split, str(error).splitlines()[0])
            _jpeg_finding(result, split, _jpeg_files(cls, root, split))  # the likely cause of "no samples"
            continue
        report.bad = {**constructed, **report.bad}
        datasets[split], result.reports[split] = dataset, report
        _file_findings(result, split, dataset, report)
    if not datasets:
        result.config = {"format": format, "root": str(root), "options": {}, "num_classes": num_classes or "?"}
        return result
    first = next(iter(datasets.values()))
    result.class_names = [] if inferred else first.class_names
    _convention_findings(result, first, inferred, options)
    return result


def _jpeg_files(cls: type, root: str | Path, split: str) -> list[str]:
    """The masks of a folder-layout split saved as JPEG, by suffix: such a split pairs only
    PNG masks, so when all its masks are JPEG it has no samples at all."""
    if not issubclass(cls, FolderDataset):
        return []
    folder = cls.mask_folder(root, split)
    if not folder.is_dir():
        return []
    return [str(p) for p in sorted(folder.glob("*")) if p.suffix.lower() in (".jpg", ".jpeg")]


def _jpeg_finding(result: Diagnosis, split: str, jpeg: list[str]) -> None:
    if jpeg:
        result.add("error", split, f"{len(jpeg)} mask(s) saved as JPEG: lossy compression puts stray values "
                                   "near every edge; masks must be saved losslessly (PNG), from the original "
                                   "labels", jpeg)


def _file_findings(result: Diagnosis, split: str, dataset: SegmentationDataset, report: DataReport) -> None:
    """Broken files (from the dataset's own checks) and what the mask files hold, per split."""
    grouped: dict[str, list[str]] = {}
    for path, reason in report.bad.items():
        if "colour-coded" in reason and dataset.stores_labels:
            continue  # the colour-mask finding below names these files, with the palette to use
        what = next((name for key, name in REASONS if key in reason), "bad files")
        grouped.setdefault(what, []).append(f"{path}: {reason}")
    for what, files in grouped.items():
        result.add("error", split, f"{what}: {len(files)} file(s)", files)
    if dataset.unpaired_masks:
        result.add("warning", split, f"{len(dataset.unpaired_masks)} mask(s) without an image (not used)",
                   dataset.unpaired_masks)
    _jpeg_finding(result, split, [*report.files.get("jpeg", []), *_jpeg_files(type(dataset), dataset.root, split)])
    sixteen = [f for f in report.files.get("16-bit", []) if f not in report.bad]
    if sixteen:
        result.add("warning", split, f"{len(sixteen)} 16-bit mask(s): read as 8-bit since every value is "
                                     "<= 255; an 8-bit PNG is half the size", sixteen)
    colour = report.files.get("colour", [])
    if colour and dataset.stores_labels:
        best, share = match_palettes(dict(report.colours))[0]
        if share >= PALETTE_MATCH:
            advice = f"they match the known palette {best!r} ({100 * share:.1f}% of pixels): set options.palette: {best}"
        else:
            unknown = ", ".join(colour_name(k) for k, _ in report.colours.most_common(5))
            advice = (f"no known palette matches (best: {best}, {100 * share:.1f}% of pixels); colours: {unknown}"
                      " ...: write a palette file ('R G B name' per line) and set options.palette to it")
        result.add("error", split, f"{len(colour)} RGB colour mask(s): class ids are read from colours only "
                                   f"with a palette; {advice}", colour)
        result.config.setdefault("palette", best if share >= PALETTE_MATCH else "PALETTE_FILE")
    if dataset.stores_labels and report.values.any():
        present = set(np.flatnonzero(report.values).tolist())
        if IGNORE_INDEX in present and present <= {0, IGNORE_INDEX}:
            result.add("error", split, "binary masks stored as 0/255: 255 is the ignore index, so the "
                                       "foreground is never learned; save the foreground as 1 (values 0 and 1) "
                                       "and train with num_classes: 2", report.files.get("0/255", []))
            result.config["binary"] = True
        edge_only = [v for v in sorted(present) if report.interior[v] < EDGE_SHARE * report.values[v]]
        if len(edge_only) >= EDGE_VALUES:
            shown = ", ".join(str(v) for v in edge_only[:12]) + (" ..." if len(edge_only) > 12 else "")
            result.add("warning", split, f"{len(edge_only)} values appear only along edges ({shown}): stray "
                                         "values like these come from masks once saved lossily (JPEG) or "
                                         "resized with interpolation; re-make the masks from the original labels")
    absent = [name for k, name in enumerate(dataset.class_names) if report.labels[k] == 0]
    if absent and report.ok and len(dataset.class_names) < IGNORE_INDEX:  # not the placeholder names of inferred classes
        result.add("warning", split, f"{len(absent)} of {dataset.num_classes} classes never present: "
                                     + ", ".join(absent[:20]) + (" ..." if len(absent) > 20 else ""))


def _convention_findings(result: Diagnosis, dataset: SegmentationDataset, inferred: bool,
                         options: dict[str, Any]) -> None:
    """``reduce_zero_label`` and ``num_classes`` against the values of every split; the config."""
    reduce = dataset.reduce_zero_label
    values = sum(r.values for r in result.reports.values())
    present = set(np.flatnonzero(values).tolist()) - {IGNORE_INDEX}
    k = None if inferred else dataset.num_classes
    if result.config.pop("binary", False):
        k, present = 2, set()
    elif dataset.stores_labels and present:
        top, total = max(present), values.sum()
        if reduce and 0 in present and k is not None and top < k:
            level = "error" if type(dataset) is FolderDataset else "warning"
            result.add(level, "all", f"0 covers {100 * values[0] / total:.1f}% of the pixels and value {k} "
                                     "never appears: 0 looks like a class, but reduce_zero_label ignores 0 and "
                                     "shifts 1..K to 0..K-1; if 0 is a class, set reduce_zero_label: false")
            reduce = False if level == "error" else reduce
        elif not reduce and 0 not in present and type(dataset) is FolderDataset:
            if k is not None and top == k:
                result.add("error", "all", f"the values are 1..{top} and 0 is never used: the classes are "
                                           "numbered from 1; set reduce_zero_label: true (0 and 255 ignored)")
            else:
                result.add("warning", "all", f"0 is never used (values {min(present)}..{top}): if the classes "
                                             "are numbered from 1, set reduce_zero_label: true")
            reduce = top == k or (inferred and reduce)
        if inferred:
            k = top if reduce else top + 1
            result.add("warning", "all", f"no classes.txt and no --num-classes: num_classes {k} is inferred from "
                                         f"the largest value, {top}; write classes.txt (one name per line)")
    config_options = {key: value for key, value in options.items() if key != "classes"}
    if type(dataset) is FolderDataset:
        config_options["reduce_zero_label"] = str(reduce).lower()
    if "palette" in result.config:
        config_options["palette"] = result.config.pop("palette")
    result.config = {"format": result.format, "root": result.root, "options": config_options,
                     "num_classes": k if k is not None else dataset.num_classes}
