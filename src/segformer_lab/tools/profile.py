"""``segformer-lab profile``: parameters and MACs of models, published and executed
(the counting is ``analysis.profiling``; docs/profiling.md explains the convention)."""

from __future__ import annotations

import argparse
import json

from ..analysis.profiling import profile_model, resolve_models
from .options import positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Count parameters and multiply-accumulates (MACs, FLOPs / 2) of one image with "
        "torch's FlopCounterMode, attention included: as published (linear_fuse and Mix-CFN's BatchNorms run "
        "literally) and as executed (folded). See docs/profiling.md for the conventions."
    )
    p.add_argument(
        "models", nargs="+", metavar="MODEL", help="registered name, shell pattern ('segformer_b*') or 'all'"
    )
    p.add_argument(
        "--size", nargs=2, type=positive_int, default=(512, 512), metavar=("H", "W"),
        help="input size (default: 512 512)",
    )
    p.add_argument("--num-classes", type=positive_int, default=None, metavar="K",
                   help="classes (default: the model's, 150)")
    p.add_argument("--json", action="store_true", help="print JSON (MACs and FLOPs) instead of a table")
    p.add_argument("--detail", action="store_true", help="add a row per encoder stage and the decoder")


def giga(macs: int) -> str:
    return f"{macs / 1e9:.2f}"


def run(args: argparse.Namespace) -> int:
    names = resolve_models(args.models)
    if args.json:
        profiles = [profile_model(n, args.size, args.num_classes).to_dict() for n in names]
        print(json.dumps(profiles, indent=2))
        return 0
    h, w = args.size
    width = max(len(n) for n in [*names, "model"])
    print(f"GMACs of one {h}x{w} image (FLOPs = 2 x MACs). published: run literally; executed: as run here, folded;")
    print("attention: the QK^T and AV products, part of both (see docs/profiling.md).")
    print(
        f"{'model':<{width}} {'params':>12} {'published':>10} {'attention':>10} {'executed':>10} "
        f"{'decoder pub':>12} {'decoder exe':>12}"
    )
    for name in names:  # printed as counted: 'all' takes a while
        prof = profile_model(name, args.size, args.num_classes)
        pub, exe = prof.published, prof.executed
        print(
            f"{name:<{width}} {prof.params:>12,} {giga(pub.total):>10} {giga(pub.attention):>10} {giga(exe.total):>10} "
            f"{giga(pub.decoder):>12} {giga(exe.decoder):>12}",
            flush=True,
        )
        if args.detail:
            for i, (stage_pub, stage_exe) in enumerate(zip(pub.stages, exe.stages), start=1):
                print(f"{'  stage ' + str(i):<{width}} {'':>12} {giga(stage_pub):>10} {'':>10} {giga(stage_exe):>10}")
            print(f"{'  decoder':<{width}} {'':>12} {giga(pub.decoder):>10} {'':>10} {giga(exe.decoder):>10}")
    return 0
