"""``segformer-lab data``: make datasets. ``data scenes`` generates the scene-parsing
dataset of ``segformer_lab.data.scenes`` (photographs shipped with scikit-image, ADE20K
layout) or finds it already generated."""

from __future__ import annotations

import argparse
import sys
import time

from ..data.scenes import SCENE_CLASSES, generate_scenes, scenes_ready


def add_arguments(p: argparse.ArgumentParser) -> None:
    kinds = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
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
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="processes (default: the usable cores, at most 8)")
    s.add_argument("--force", action="store_true", help="regenerate even if a complete dataset is there")


def run(args: argparse.Namespace) -> int:
    size = tuple(args.size)
    params = dict(train=args.train, val=args.val, seed=args.seed, size=size)
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
          f"{len(SCENE_CLASSES)} classes, seed {args.seed}: {how}")
    return 0
