"""``segformer-lab models``: the registered model names and their sizes."""

from __future__ import annotations

import argparse
import json

import torch

from ..models import SegmentationModel, get_config, list_models
from ..models.parameters import parameter_counts


def model_rows(pattern: str = "*") -> list[dict]:
    """One row per registered model: name, stages, decoder, parameter count (150 classes)."""
    rows = []
    for name in list_models(pattern):
        config = get_config(name)
        with torch.device("meta"):  # counting parameters allocates nothing
            params = parameter_counts(SegmentationModel(config))["total"]
        rows.append(
            {
                "name": name,
                "widths": list(config.widths),
                "depths": list(config.depths),
                "decoder": f"{config.decoder.type}({config.decoder.width})",
                "params": params,
            }
        )
    return rows


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "List the registered model names with widths, depths, decoder and parameter count "
        "(150 classes). Any listed name can be passed to create_model(), profile and bench."
    )
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'segformer_b*' (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    rows = model_rows(args.pattern)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<22} {'widths':<20} {'depths':<14} {'decoder':<14} {'params':>12}")
    for r in rows:
        widths = " ".join(map(str, r["widths"]))
        depths = " ".join(map(str, r["depths"]))
        print(f"{r['name']:<22} {widths:<20} {depths:<14} {r['decoder']:<14} {r['params']:>12,}")
    return 0
