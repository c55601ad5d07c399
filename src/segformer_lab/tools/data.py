"""``segformer-lab data``: make, check and look at datasets. ``data scenes`` generates the
scene-parsing dataset of ``segformer_lab.data.scenes`` (photographs shipped with
scikit-image, ADE20K layout) or finds it already generated; ``data check`` diagnoses a
dataset (``data.diagnose``) and prints the config lines to train on it; ``data show``
draws samples with their masks (``analysis.data_show``)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .._io import write_json
from ..data import DATASETS
from ..data.diagnose import diagnose
from ..data.scenes import SCENE_CLASSES, generate_scenes, scenes_ready
from ..analysis import data_show
from .options import positive_int


def dataset_source(text: str) -> tuple[str, str]:
    """``FORMAT:ROOT`` -> ``(format, root)``; the format must be one of ``DATASETS``."""
    fmt, sep, root = text.partition(":")
    if not sep or not root:
        raise argparse.ArgumentTypeError(f"expected FORMAT:ROOT (e.g. folder:data/mine), got {text!r}")
    if fmt not in DATASETS:
        raise argparse.ArgumentTypeError(f"unknown format {fmt!r} in {text!r}; choose from {sorted(DATASETS)}")
    return fmt, root


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """The dataset options ``check`` and ``show`` share."""
    p.add_argument("source", type=dataset_source, metavar="FORMAT:ROOT",
                   help=f"the dataset: format ({', '.join(sorted(DATASETS))}) and root directory")
    p.add_argument("--num-classes", type=positive_int, metavar="K",
                   help="classes the model will have (default: the dataset's classes.txt or palette)")
    p.add_argument("--palette", metavar="NAME|FILE",
                   help="folder format: masks are RGB colours of this palette (ade20k, cityscapes, voc, scenes, "
                        "or a file of 'R G B name' lines)")
    p.add_argument("--reduce-zero-label", action=argparse.BooleanOptionalAction, default=None,
                   help="folder format: mask value 0 is ignored and 1..K are the classes (as ADE20K)")


def dataset_options(args: argparse.Namespace) -> dict:
    options = {}
    if args.palette is not None:
        options["palette"] = args.palette
    if args.reduce_zero_label is not None:
        options["reduce_zero_label"] = args.reduce_zero_label
    return options


def add_arguments(p: argparse.ArgumentParser) -> None:
    kinds = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = kinds.add_parser(
        "scenes",
        help="scene-parsing dataset generated from scikit-image's photographs",
        description="Generate a scene-parsing dataset (14 classes; sky/water, wall/pavement and mountain/rock "
        "look alike and differ only by position or context) in the ADE20K layout: images/{training,validation}"
        "/*.jpg, annotations/.../*.png (0 = unlabelled, class c stored as c + 1), classes.txt, dataset.json. "
        "Deterministic for a seed; a complete dataset with the same parameters is reused. Load it with "
        "build_dataset('ade20k', DIR, 'train').",
    )
    s.add_argument("--out", required=True, metavar="DIR", help="dataset root to write (or reuse)")
    s.add_argument("--train", type=int, default=2000, metavar="N", help="training images (default: 2000)")
    s.add_argument("--val", type=int, default=200, metavar="M",
                   help="validation images, of varied sizes (default: 200)")
    s.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    s.add_argument("--size", nargs=2, type=int, default=(128, 128), metavar=("H", "W"),
                   help="training image size (default: 128 128); validation sides range over 0.75x..2x+32")
    s.add_argument("--position-free", action="store_true",
                   help="turn each scene upside down with probability 1/2, so that a class's position says "
                   "nothing about it (the control dataset of 'study rope')")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes (default: the usable cores, at most 8)")
    s.add_argument("--force", action="store_true", help="regenerate even if a complete dataset is there")
    s.set_defaults(action_run=run_scenes)

    c = kinds.add_parser(
        "check", help="check a dataset and its label conventions before training",
        description="Read every image header and mask of every split and report counts, unpaired, unreadable "
        "and mismatched files, mask modes, the histogram of label values, classes never present, values out of "
        "range and the convention mistakes (binary masks stored 0/255, RGB colour masks, JPEG or 16-bit masks, "
        "reduce_zero_label against the data); print the config lines to use. Exit status 1 when training would "
        "fail or learn the wrong thing.",
    )
    add_dataset_arguments(c)
    c.add_argument("--split", action="append", metavar="S", help="split to check (repeatable; default: all found)")
    c.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    c.add_argument("--workers", type=positive_int, default=min(8, os.cpu_count() or 1), metavar="N",
                   help="reading threads (default: the cores, at most 8)")
    c.set_defaults(action_run=run_check)

    v = kinds.add_parser(
        "show", help="draw samples with their masks (optionally after the training transforms)",
        description="Write a grid of images with their masks overlaid and a legend of the classes shown, "
        "as read for training (--transforms: after that pipeline, e.g. segformer_ade, to see the augmentation).",
    )
    add_dataset_arguments(v)
    v.add_argument("--out", required=True, metavar="DIR", help="directory for the grid (DIR/SPLIT.png)")
    v.add_argument("--split", default="train", metavar="S", help="split to show (default: train)")
    v.add_argument("--n", type=positive_int, default=16, metavar="N", help="samples to show (default: 16)")
    v.add_argument("--transforms", metavar="NAME", help="training pipeline to apply first (e.g. segformer_ade; "
                   "default: none, the files as read)")
    v.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the transforms (default: 0)")
    v.add_argument("--tile", type=positive_int, default=256, metavar="PX", help="tile side in pixels (default: 256)")
    v.set_defaults(action_run=run_show)


def run(args: argparse.Namespace) -> int:
    return args.action_run(args)


class Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self):
        self.last = 0.0

    def __call__(self, split: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < 0.1:
            return
        self.last = now
        filled = 30 * done // max(total, 1)
        end = "\n" if done == total else ""
        sys.stderr.write(f"\r{split}: [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}{end}")
        sys.stderr.flush()


def run_check(args: argparse.Namespace) -> int:
    fmt, root = args.source
    result = diagnose(fmt, root, splits=args.split, num_classes=args.num_classes, options=dataset_options(args),
                      workers=args.workers, progress=Progress())
    print("\n".join(result.lines()))
    if args.json:
        write_json(Path(args.json), result.to_dict())
    return 0 if result.ok else 1


def run_show(args: argparse.Namespace) -> int:
    fmt, root = args.source
    path = data_show.show_dataset(fmt, root, args.out, split=args.split, n=args.n, transforms=args.transforms,
                                  num_classes=args.num_classes, options=dataset_options(args), seed=args.seed,
                                  tile=args.tile)
    print(path)
    return 0


def run_scenes(args: argparse.Namespace) -> int:
    size = tuple(args.size)
    params = dict(train=args.train, val=args.val, seed=args.seed, size=size, position_free=args.position_free)
    reused = not args.force and scenes_ready(args.out, **params)
    started = time.perf_counter()
    try:
        root = generate_scenes(args.out, **params, workers=args.workers, force=args.force)
    except FileExistsError as err:  # --out names a directory that is not ours
        print(f"segformer-lab data scenes: error: {err}", file=sys.stderr)
        return 2
    how = "reused cache" if reused else f"generated in {time.perf_counter() - started:.1f} s"
    print(root)
    print(f"scenes: {args.train} train ({size[0]}x{size[1]}) + {args.val} val images (varied sizes), "
          f"{len(SCENE_CLASSES)} classes, seed {args.seed}"
          + (", position-free (half upside down)" if args.position_free else "") + f": {how}")
    return 0
