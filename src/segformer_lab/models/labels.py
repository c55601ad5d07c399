"""What a model's classes are called: ``id2label`` (transformers' key, ``{"0": "wall", ...}``)
to names and back, and the one resolution of the names to show for a model that may not
know them (ADE20K's for 150 classes, else ``class k``, said once in the log).

Below ``config`` (which stores the names and validates them), above nothing of the
models: ``data.ade20k`` gives ADE20K's names.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Mapping, Sequence

from ..data.ade20k import ADE20K_CLASSES

log = logging.getLogger("segformer_lab")
# names that say nothing: transformers' (a config given num_labels, no id2label), ours and
# the folder format's for a dataset without a classes.txt
PLACEHOLDER = re.compile(r"(?:LABEL_|class |class_)(\d+)")


def placeholders(names: Sequence[str]) -> bool:
    """Whether ``names`` are numbered placeholders (``LABEL_0``, ``class 0``, ``class_0``, ...)."""
    return all((m := PLACEHOLDER.fullmatch(n)) is not None and int(m.group(1)) == i for i, n in enumerate(names))


def names_from_id2label(id2label: Mapping[Any, Any]) -> tuple[str, ...] | None:
    """The names of ``id2label`` (keys ``0..K-1``, as ints or strings) in index order; None
    for ``placeholders`` (transformers' ``LABEL_0``, ``LABEL_1``, ..., or ``class 0``, ``class 1``,
    ..., what ``resolve_class_names`` shows for unknown names). Other keys are a
    ``ValueError`` (the caller names the file)."""
    if not isinstance(id2label, Mapping) or not id2label:
        raise ValueError(f"id2label must be a non-empty mapping of class index to name, got {id2label!r}")
    by_index: dict[int, str] = {}
    for key, name in id2label.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"id2label key {key!r} is not a class index") from None
        by_index[index] = str(name)
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError(f"id2label keys must be 0..{len(by_index) - 1}, got {sorted(by_index)}")
    names = tuple(by_index[i] for i in range(len(by_index)))
    return None if placeholders(names) else names


def to_id2label(names: Sequence[str]) -> dict[str, str]:
    """``{"0": names[0], ...}``: string keys, as JSON and transformers write them."""
    return {str(i): str(name) for i, name in enumerate(names)}


def resolve_class_names(names: Sequence[str] | None, num_classes: int, where: str = "model") -> list[str]:
    """The names to show: the model's own, else ADE20K's for 150 classes (the count of
    every ADE20K checkpoint without a config, e.g. NVlabs'), else ``class 0``, ``class 1``,
    ...; the fallback is said in one log line."""
    if names is not None:
        if len(names) != num_classes:
            raise ValueError(f"{where}: {len(names)} class names for {num_classes} classes")
        return [str(n) for n in names]
    if num_classes == len(ADE20K_CLASSES):
        log.warning("%s stores no class names: using ADE20K's (it has 150 classes)", where)
        return list(ADE20K_CLASSES)
    log.warning("%s stores no class names: using 'class 0' ... 'class %d'", where, num_classes - 1)
    return [f"class {k}" for k in range(num_classes)]
