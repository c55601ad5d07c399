"""Checking a whole dataset before training: ``check_dataset`` and its ``DataReport``.

Every sample is decoded and validated by the dataset's own ``load`` (the checks training
runs); for segmentation datasets the mask file is also read as it is on disk (mode,
format, raw values or colours) so that ``data.diagnose`` can tell a convention mistake
from a broken file. Samples are read by a pool of threads (image decoding releases the GIL).
"""

from __future__ import annotations

import io
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..io import DataError, warn
from ..palettes import colour_keys
from .base import BaseDataset, SegmentationDataset

RAW_VALUES = 65536  # histogram bins of the values a mask file holds (16-bit masks included)
MAX_COLOURS = 4096  # distinct colours of colour masks counted per split; the rest are summed as other


@dataclass
class MaskFacts:
    """One mask file as stored: PIL format and mode, sizes, and its values (gray) or colours."""

    image: str
    mask: str
    image_size: tuple[int, int] | None = None  # (W, H)
    mask_size: tuple[int, int] | None = None
    format: str | None = None
    mode: str | None = None
    values: np.ndarray | None = None  # bincount of the stored values (gray masks)
    interior: np.ndarray | None = None  # bincount of the values of pixels equal to their 4 neighbours
    colours: dict[int, int] | None = None  # 0xRRGGBB -> pixels (colour masks)
    labels: np.ndarray | None = None  # bincount (256) of the training labels, when the sample loads


@dataclass
class DataReport:
    """What ``check_dataset`` found: samples scanned, good ones, ``{path: reason}`` of bad
    files (a file can spoil several samples, e.g. a parquet file); for segmentation, per
    split totals of what the mask files hold (``modes``, ``formats``, ``values``,
    ``colours``, ``labels``) and the files behind each fact (``files``)."""

    total: int
    ok: int = 0
    bad: dict[str, str] = field(default_factory=dict)
    modes: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)
    values: np.ndarray = field(default_factory=lambda: np.zeros(RAW_VALUES, np.int64))
    interior: np.ndarray = field(default_factory=lambda: np.zeros(RAW_VALUES, np.int64))
    colours: Counter = field(default_factory=Counter)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    files: dict[str, list[str]] = field(default_factory=dict)  # fact -> mask files, e.g. "colour"

    def note(self, fact: str, path: str) -> None:
        self.files.setdefault(fact, []).append(path)

    def add(self, facts: MaskFacts) -> None:
        if facts.mode is not None:
            self.modes[facts.mode] += 1
            self.formats[facts.format or "?"] += 1
        if facts.values is not None:
            self.values[: facts.values.size] += facts.values
            self.interior[: facts.interior.size] += facts.interior
            if facts.mode in ("I;16", "I;16B", "I;16L", "I"):
                self.note("16-bit", facts.mask)
            present = set(np.flatnonzero(facts.values).tolist())
            if 255 in present and present <= {0, 255}:
                self.note("0/255", facts.mask)
        if facts.colours is not None:
            self.note("colour", facts.mask)
            for key, count in facts.colours.items():
                if key in self.colours or len(self.colours) < MAX_COLOURS:
                    self.colours[key] += count
        if facts.format == "JPEG":
            self.note("jpeg", facts.mask)
        if facts.image_size and facts.mask_size and facts.image_size != facts.mask_size:
            self.note("size", facts.mask)
        if facts.labels is not None:
            self.labels += facts.labels

    def __str__(self) -> str:
        lines = [f"{self.ok}/{self.total} samples ok, {len(self.bad)} bad file(s)"]
        lines += [f"  {path}: {reason}" for path, reason in list(self.bad.items())[:20]]
        if len(self.bad) > 20:
            lines.append(f"  ... and {len(self.bad) - 20} more")
        return "\n".join(lines)


def read_mask_facts(source: Any, facts: MaskFacts) -> None:
    """Fill ``facts`` from the mask file as stored; a file PIL cannot read is left blank
    (the dataset's ``load`` reports it)."""
    try:
        with Image.open(_file(source)) as image:
            image.load()
            facts.format, facts.mode, facts.mask_size = image.format, image.mode, image.size
            array = np.array(image)
    except Exception:  # noqa: BLE001 - unreadable: load() names the reason
        return
    if array.ndim == 3 and facts.mode in ("LA", "PA"):
        array = array[:, :, 0]
    if array.ndim == 3:
        rgb = array[:, :, :3]
        if (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 0] == rgb[:, :, 2]).all():
            array = rgb[:, :, 0]
        else:
            keys, counts = np.unique(colour_keys(rgb), return_counts=True)
            facts.colours = dict(zip(keys.tolist(), counts.tolist()))
            return
    array = np.clip(array.astype(np.int64, copy=False), 0, RAW_VALUES - 1)
    facts.values = np.bincount(array.ravel(), minlength=1)
    inner = array[1:-1, 1:-1]
    same = ((inner == array[:-2, 1:-1]) & (inner == array[2:, 1:-1])
            & (inner == array[1:-1, :-2]) & (inner == array[1:-1, 2:]))
    facts.interior = np.bincount(inner[same], minlength=1)


def _file(source: Any) -> Any:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _image_size(source: Any) -> tuple[int, int] | None:
    try:
        with Image.open(_file(source)) as image:  # the header only
            return image.size
    except Exception:  # noqa: BLE001 - unreadable: load() names the reason
        return None


def _check_one(dataset: BaseDataset, ref: Any) -> tuple[MaskFacts | None, DataError | None]:
    facts = None
    try:
        if isinstance(dataset, SegmentationDataset):
            image_src, mask_src, image_name, mask_name = dataset.sources(ref)
            facts = MaskFacts(image_name, mask_name, image_size=_image_size(image_src))
            read_mask_facts(mask_src, facts)
        sample = dataset.load(ref)
    except DataError as error:
        return facts, error
    if facts is not None:
        facts.labels = np.bincount(sample["mask"].ravel(), minlength=256)
    return facts, None


def check_dataset(dataset: BaseDataset, *, raise_errors: bool | None = None, workers: int = 1,
                  progress: Callable[[int, int], None] | None = None) -> DataReport:
    """Decode and validate every sample (no transforms), ``workers`` threads at a time
    (one for datasets that are not ``thread_safe``), calling ``progress(done, total)``
    as samples finish. With ``skip_bad`` the bad samples are removed from ``dataset`` (so
    DataLoader workers never meet them) and a summary warning is given; otherwise a
    ``DataError`` lists them (``raise_errors=False``: just return the report)."""
    raise_errors = not dataset.skip_bad if raise_errors is None else raise_errors
    report, keep = DataReport(total=len(dataset)), []
    workers = max(1, min(workers, os.cpu_count() or 1)) if getattr(dataset, "thread_safe", True) else 1
    with ThreadPoolExecutor(workers) as pool:
        for done, (ref, (facts, error)) in enumerate(
                zip(dataset.samples, pool.map(lambda ref: _check_one(dataset, ref), dataset.samples)), 1):
            if facts is not None:
                report.add(facts)
            if error is None:
                keep.append(ref)
            else:
                report.bad[error.path] = error.reason
            if progress is not None:
                progress(done, report.total)
    report.ok = len(keep)
    if report.bad and raise_errors:
        first = next(iter(report.bad))
        raise DataError(first, f"{report.bad[first]}\n{report}")
    if dataset.skip_bad and report.bad:
        if not keep:
            raise DataError(repr(dataset), f"empty split: every sample is bad\n{report}")
        dataset.samples = keep
        dataset.bad_files.update(report.bad)
        warn(f"{dataset!r}: {report.total - report.ok} bad sample(s) removed, {report.ok} kept")
    return report
