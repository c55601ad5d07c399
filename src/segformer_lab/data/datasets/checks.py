"""Checking a whole dataset before training: ``check_dataset`` and its ``DataReport``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..io import DataError, warn
from .base import BaseDataset


@dataclass
class DataReport:
    """What ``check_dataset`` found: samples scanned, good ones, ``{path: reason}`` of bad
    files (a file can spoil several samples, e.g. a parquet file)."""

    total: int
    ok: int = 0
    bad: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"{self.ok}/{self.total} samples ok, {len(self.bad)} bad file(s)"]
        lines += [f"  {path}: {reason}" for path, reason in list(self.bad.items())[:20]]
        if len(self.bad) > 20:
            lines.append(f"  ... and {len(self.bad) - 20} more")
        return "\n".join(lines)


def check_dataset(dataset: BaseDataset, *, raise_errors: bool | None = None) -> DataReport:
    """Decode and validate every sample (no transforms). With ``skip_bad`` the bad samples
    are removed from ``dataset`` (so DataLoader workers never meet them) and a summary
    warning is given; otherwise a ``DataError`` lists them (``raise_errors=False``: just
    return the report)."""
    raise_errors = not dataset.skip_bad if raise_errors is None else raise_errors
    report, keep = DataReport(total=len(dataset)), []
    for ref in dataset.samples:
        try:
            dataset.load(ref)
            keep.append(ref)
        except DataError as error:
            report.bad[error.path] = error.reason
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
