"""Hugging Face parquet datasets (``scene_parse_150``-style) already on disk.

pyarrow is imported when a parquet dataset is built or read, not with the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from ..ade20k import ADE20K_CLASSES
from ..io import DataError
from .base import SegmentationDataset, Transform, split_name

if TYPE_CHECKING:
    import pyarrow as pa


class ParquetDataset(SegmentationDataset):
    """Hugging Face ``scene_parse_150``-style parquet files already on disk: columns
    ``image`` and ``annotation``, each a struct {bytes, path}. ``root`` is a directory
    searched recursively for the split's files (``train-00000-of-00028.parquet``, or any
    file under a directory named after the split) or a single ``.parquet`` file.
    Only metadata is read up front; samples are decoded on demand, one row group read
    at a time (the last one is cached, so sequential access reads each group once).
    Defaults: ADE20K's 150 classes with reduce-zero-label."""

    split_aliases = {"training": "train", "val": "validation"}
    thread_safe = False  # one cached row group, replaced as reading moves on

    def __init__(self, root: str | Path, split: str = "train", *, transforms: Transform | str | None = None,
                 num_classes: int | None = None, classes: Sequence[str] = ADE20K_CLASSES,
                 reduce_zero_label: bool = True, image_column: str = "image",
                 annotation_column: str = "annotation", skip_bad: bool = False):
        self.root, self.split = Path(root), split_name(split, self.split_aliases)
        super().__init__(classes, transforms=transforms, num_classes=num_classes,
                         reduce_zero_label=reduce_zero_label, skip_bad=skip_bad, where=str(self.root))
        self.columns = [image_column, annotation_column]
        self.files = self._find_files()
        self.row_groups = [self._row_groups(path) for path in self.files]  # rows per group, per file
        for file_index, groups in enumerate(self.row_groups):
            self.samples.extend((file_index, group, row) for group, rows in enumerate(groups)
                                for row in range(rows))
        self._cache: tuple[tuple[int, int], pa.Table] | None = None
        self._finish_construction(f"{self.root} (split {self.split!r})")

    def _find_files(self) -> list[Path]:
        if self.root.is_file():
            return [self.root]
        if not self.root.is_dir():
            raise DataError(str(self.root), "not found")
        found = sorted(self.root.rglob("*.parquet"))
        chosen = [p for p in found if p.name.startswith((f"{self.split}-", f"{self.split}_"))
                  or p.stem == self.split or self.split in p.relative_to(self.root).parts[:-1]]
        if not chosen:
            raise DataError(str(self.root), f"empty split: no parquet files for split {self.split!r} "
                                            f"among {[p.name for p in found][:10]}")
        return chosen

    def _row_groups(self, path: Path) -> list[int]:
        """Row counts per row group, from the footer; checks the columns exist."""
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:
            self._bad(DataError(str(path), f"cannot read parquet ({type(exc).__name__}: {exc})"))
            return []
        names = meta.schema_arrow.names
        for column in self.columns:
            if column not in names:
                self._bad(DataError(str(path), f"column {column!r} missing (columns: {names})"))
                return []
        return [meta.metadata.row_group(i).num_rows for i in range(meta.num_row_groups)]

    def _row(self, ref: tuple[int, int, int]) -> tuple[dict | None, dict | None]:
        file_index, group, row = ref
        if self._cache is None or self._cache[0] != (file_index, group):
            import pyarrow.parquet as pq

            path = self.files[file_index]
            try:
                table = pq.ParquetFile(path).read_row_group(group, columns=self.columns)
            except Exception as exc:
                raise DataError(str(path), f"cannot read row group {group} "
                                           f"({type(exc).__name__}: {exc})") from exc
            self._cache = ((file_index, group), table)
        table = self._cache[1]
        return table.column(self.columns[0])[row].as_py(), table.column(self.columns[1])[row].as_py()

    def sources(self, ref: tuple[int, int, int]) -> tuple[bytes, bytes, str, str]:
        file_index, group, row = ref
        row_index = sum(self.row_groups[file_index][:group]) + row
        path = f"{self.files[file_index]}[row {row_index}]"
        image, annotation = self._row(ref)
        if image and image.get("path"):
            path += f" ({image['path']})"
        if not image or not image.get("bytes"):
            raise DataError(path, f"no image bytes in column {self.columns[0]!r}")
        if not annotation or not annotation.get("bytes"):
            raise DataError(path, f"missing annotation (column {self.columns[1]!r} is empty)")
        return image["bytes"], annotation["bytes"], path, f"{path} annotation"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = None  # workers read their own row groups
        return state

    def __repr__(self) -> str:
        return f"ParquetDataset(root={str(self.root)!r}, split={self.split!r}, samples={len(self)})"
