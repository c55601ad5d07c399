"""``segformer-lab predict``: label maps (and colour overlays) for image files, with a
checkpoint or an exported ``.onnx`` file (in onnxruntime).

Inputs are files, directories (their images, not recursive) or glob patterns. For each
image ``NAME.ext`` the output directory gets ``NAME.png``, a palette PNG whose pixel
values are class indices, with ``--overlay`` ``NAME_overlay.jpg`` (``.png`` for
non-JPEG inputs): the image blended with the class colours and a legend of the class
names (the model's own, see ``Segmenter``), and with ``--confidence``
``NAME_confidence.png``, the probability of the predicted class per pixel as a 16-bit PNG
(0..65535 = 0..1), and ``NAME_confidence_overlay.jpg|png``, its heat map over the image.
Images run as the model's preprocessing says (the one stored with it: a trained run's
validation protocol; ``--size``/``--scale``/``--multiple-of``/``--mode`` go over it; one line
says which); outputs have the input's size. An input that cannot be read is reported and skipped; the others
are still written, and the exit status is 1 if any failed.

Every file predict writes says so in its metadata (``WRITER``: a PNG ``Software`` text
chunk, a JPEG comment). An output that would replace an existing file without it (a
photo, a mask of your own) is refused before anything is written, naming the file, unless
``--overwrite``; a rerun into the same directory replaces its own outputs. An input is
never replaced.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .._io import atomic_write
from ..data import IMAGE_SUFFIXES, DataError, read_text
from ..inference import (
    MAX_PALETTE_CLASSES,
    Segmenter,
    confidence_image,
    confidence_overlay,
    load_rgb,
    open_segmenter,
)
from .options import (add_onnx_arguments, add_preprocessing_arguments, onnx_options, positive_int,
                      preprocessing_options, scale)

log = logging.getLogger("segformer_lab")

JPEG_SUFFIXES = (".jpg", ".jpeg")
WRITER = "segformer-lab predict"  # in every file predict writes: what it may replace without --overwrite


@dataclass
class Input:
    name: str  # as the user named it (or as found in a directory / by a pattern)
    path: Path | None
    error: str | None = None


@dataclass
class Summary:
    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)

    @property
    def total(self) -> int:
        return len(self.written) + len(self.failed)


def expand_inputs(tokens: list[str]) -> list[Input]:
    """Files as given; directories -> their image files (sorted, by suffix); patterns ->
    the matching files (sorted). A token that names nothing is an ``Input`` with an error."""
    inputs: list[Input] = []
    seen: set[Path] = set()

    def add(path: Path, name: str) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            inputs.append(Input(name=name, path=path))

    def add_directory(directory: Path) -> None:
        images = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            inputs.append(Input(name=str(directory), path=None, error=f"no image files ({', '.join(IMAGE_SUFFIXES)})"))
        for p in images:
            add(p, str(p))

    def add_existing(name: str) -> bool:
        """A directory's images or a file, if ``name`` is either."""
        path = Path(name)
        if path.is_dir():
            add_directory(path)
        elif path.is_file():
            add(path, name)
        else:
            return False
        return True

    for token in tokens:
        if add_existing(token):
            continue
        if glob.escape(token) != token:  # has a wildcard
            matches = sorted(glob.glob(token, recursive=True))
            if not matches:
                inputs.append(Input(name=token, path=None, error="no file matches this pattern"))
            for match in matches:
                add_existing(match)
        else:
            inputs.append(Input(name=token, path=None, error="no such file or directory"))
    return inputs


def output_names(inputs: list[Input]) -> dict[int, str]:
    """Output stem per readable input: its own stem, or ``stem-2``, ``stem-3`` ... when
    several inputs share one."""
    stems: dict[int, str] = {}
    used: set[str] = set()
    for i, item in enumerate(inputs):
        if item.path is None:
            continue
        stem, n = item.path.stem, 1
        while (stem if n == 1 else f"{stem}-{n}") in used:
            n += 1
        chosen = stem if n == 1 else f"{stem}-{n}"
        if n > 1:
            log.warning("%s: another input has the stem %r: writing it as %r", item.name, stem, chosen)
        used.add(chosen)
        stems[i] = chosen
    return stems


def overlay_suffix(path: Path) -> str:
    return ".jpg" if path.suffix.lower() in JPEG_SUFFIXES else ".png"


def output_paths(path: Path, stem: str, out_dir: Path, overlay: bool, confidence: bool) -> dict[str, Path]:
    """What one input writes: ``labels`` always, ``overlay``, ``confidence`` and
    ``confidence_overlay`` when asked for (overlays keep a JPEG input's format)."""
    suffix = overlay_suffix(path)
    paths = {"labels": out_dir / f"{stem}.png"}
    if overlay:
        paths["overlay"] = out_dir / f"{stem}_overlay{suffix}"
    if confidence:
        paths["confidence"] = out_dir / f"{stem}_confidence.png"
        paths["confidence_overlay"] = out_dir / f"{stem}_confidence_overlay{suffix}"
    return paths


def save_picture(picture, path: Path) -> None:
    """A PIL image written atomically, as JPEG (quality 92) or PNG by ``path``'s suffix,
    marked as ``WRITER``'s (a JPEG comment, a PNG text chunk)."""
    if path.suffix == ".jpg":
        options = {"format": "JPEG", "quality": 92, "comment": WRITER}
    else:
        info = PngInfo()
        info.add_text("Software", WRITER)
        options = {"format": "PNG", "pnginfo": info}
    atomic_write(path, lambda p: picture.save(p, **options))


def written_by_predict(path: Path) -> bool:
    """Whether the file at ``path`` is one predict wrote (its ``WRITER`` mark)."""
    try:
        with Image.open(path) as image:
            comment = image.info.get("comment", b"")  # a JPEG's, as bytes
    except (OSError, ValueError):  # not an image at all
        return False
    text = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else comment
    return WRITER in (image.info.get("Software"), text)


def check_replaced(targets: list[Path]) -> None:
    """Refuse before anything is written when an output would replace a file predict did
    not write, naming it (the first, and how many more)."""
    foreign = [target for target in targets if os.path.lexists(target) and not written_by_predict(target)]
    if foreign:
        more = f" (and {len(foreign) - 1} more outputs)" if len(foreign) > 1 else ""
        raise ValueError(f"{foreign[0]} exists and segformer-lab predict did not write it{more}: choose another --out "
                         "directory, or give --overwrite to replace it")


def predict_files(
    segmenter: Segmenter,
    tokens: list[str],
    out_dir: str | Path,
    overlay: bool = False,
    alpha: float = 0.5,
    batch: int = 1,
    echo=print,
    confidence: bool = False,
    overwrite: bool = False,
) -> Summary:
    """Write label maps (and overlays, confidence maps) for every input into ``out_dir``;
    returns what was written and what failed (with the reason). An existing file that
    predict did not write is replaced only with ``overwrite`` (an input never)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"--alpha must be in [0, 1], got {alpha}")
    if batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    if segmenter.num_classes > MAX_PALETTE_CLASSES:
        raise ValueError(f"{segmenter.num_classes} classes do not fit a palette PNG (at most {MAX_PALETTE_CLASSES})")
    out_dir = Path(out_dir)
    inputs = expand_inputs(tokens)
    stems = output_names(inputs)
    outputs = {i: output_paths(inputs[i].path, stem, out_dir, overlay, confidence) for i, stem in stems.items()}
    sources = {item.path.resolve() for item in inputs if item.path is not None}
    writers: dict[Path, str] = {}
    for i, paths in outputs.items():
        for target in paths.values():
            if target.resolve() in sources:
                raise ValueError(f"writing {target} would overwrite an input: choose another --out directory")
            if target in writers:  # e.g. a.png's confidence map and the labels of an input a_confidence.png
                raise ValueError(f"{target} would be written for both {writers[target]} and {inputs[i].name}: "
                                 "rename one of them or predict them into separate --out directories")
            writers[target] = inputs[i].name
    if not overwrite:
        check_replaced(list(writers))
    out_dir.mkdir(parents=True, exist_ok=True)

    summary = Summary()
    for item in inputs:
        if item.error is not None:
            summary.failed.append((item.name, item.error))
    pending = [i for i in stems]
    for start in range(0, len(pending), batch):
        chunk = []
        for i in pending[start : start + batch]:
            try:
                chunk.append((i, load_rgb(inputs[i].path, inputs[i].name)))
            except DataError as err:
                summary.failed.append((inputs[i].name, err.reason))
        if not chunk:
            continue
        try:
            results = segmenter.predict_batch([rgb for _, rgb in chunk], batch_size=batch, confidence=confidence)
        except (RuntimeError, ValueError) as err:  # e.g. out of memory on one huge image
            summary.failed.extend((inputs[i].name, f"prediction failed: {err}") for i, _ in chunk)
            continue
        for (i, rgb), result in zip(chunk, results):
            started = time.perf_counter()
            label_map, confidence_map = result if confidence else (result, None)
            paths = outputs[i]
            save_picture(segmenter.label_image(label_map), paths["labels"])
            if overlay:
                save_picture(segmenter.overlay(rgb, label_map, alpha=alpha), paths["overlay"])
            if confidence:
                save_picture(confidence_image(confidence_map), paths["confidence"])
                save_picture(confidence_overlay(rgb, confidence_map), paths["confidence_overlay"])
            present = np.unique(label_map).size
            log.debug("%s written in %.2f s", paths["labels"], time.perf_counter() - started)
            echo(f"{inputs[i].name} -> {', '.join(p.name for p in paths.values())} ({rgb.shape[1]}x{rgb.shape[0]}, "
                 f"{present} classes)")
            summary.written.append(inputs[i].name)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Segment image files, directories or glob patterns with a checkpoint (anything load_model "
        "reads; a registered model name gives random weights) or an exported .onnx file. Writes OUT/NAME.png, "
        "a palette PNG whose pixel values are class indices (ADE20K's palette for 150 classes), and with "
        "--overlay OUT/NAME_overlay.jpg|png with a legend of the model's class names (--confidence: confidence maps "
        "too). Images are resized and normalised as the model's stored preprocessing says (printed); outputs have the input's "
        "size; unreadable inputs are reported and skipped (exit 1)."
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="checkpoint path, Hugging Face Hub id "
                   "owner/name[@revision] (a local path wins), .onnx file, or registered model name")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, directories or glob patterns")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing files in --out that predict did not write (its own outputs, marked in "
                   "their metadata, are replaced anyway; inputs never)")
    p.add_argument("--overlay", action="store_true", help="also write a colour overlay with a legend")
    p.add_argument("--confidence", action="store_true",
                   help="also write NAME_confidence.png (probability of the predicted class per pixel, 16-bit: "
                   "0..65535 = 0..1) and NAME_confidence_overlay.jpg|png (its heat map over the image)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the colours, 0..1 (default 0.5)")
    add_preprocessing_arguments(p)
    p.add_argument("--scales", type=scale, nargs="+", default=(1.0,), metavar="S",
                   help="test-time scales, probabilities averaged (default 1.0)")
    p.add_argument("--flip", action="store_true", help="add horizontally flipped inputs (test-time augmentation)")
    p.add_argument("--batch", type=positive_int, default=1, metavar="N",
                   help="images per forward pass (same-size images)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    p.add_argument("--num-classes", type=positive_int, metavar="K",
                   help="classes of a registered model name (or of an .onnx file without metadata)")
    p.add_argument("--class-names", metavar="FILE", help="text file with one class name per line (for the legend)")
    add_onnx_arguments(p, num_classes=False)


def run(args: argparse.Namespace) -> int:
    class_names = None
    if args.class_names:
        class_names = [ln.strip() for ln in read_text(args.class_names).splitlines() if ln.strip()]
    try:
        segmenter = open_segmenter(
            args.checkpoint, device=args.device, scales=args.scales, flip=args.flip, class_names=class_names,
            **preprocessing_options(args), **onnx_options(args),
        )  # fmt: skip
    except ValueError as e:
        if class_names is None:
            raise
        raise ValueError(f"--class-names {args.class_names}: {e}") from None
    print(segmenter.preprocessing_line)
    started = time.perf_counter()
    summary = predict_files(segmenter, args.inputs, args.out, args.overlay, args.alpha, args.batch,
                            confidence=args.confidence, overwrite=args.overwrite)
    elapsed = time.perf_counter() - started
    for name, reason in summary.failed:
        print(f"segformer-lab {args.command}: {name}: {reason}", file=sys.stderr)
    print(
        f"{len(summary.written)} of {summary.total} inputs written to {args.out} in {elapsed:.1f} s"
        + (f"; {len(summary.failed)} failed: {', '.join(name for name, _ in summary.failed)}" if summary.failed else "")
    )
    return 1 if summary.failed else 0
