"""``segformer-lab study``: studies that need many paired runs and intervals to say anything.

``study rope`` (``rope``): RoPE's effect in SegFormer and BoostFormer on the embedded scenes,
seed-paired, at 1x, 2x and 3x the training size, with a position-free control. It runs on
the demo's machinery (``tools/demo``: datasets, the budget planner, runs that resume or are
reused, progress lines); what is its own is the variants and their shared initialisation
(``variants``), the statistics of the summary (``summary``, over ``analysis.statistics``)
and the report (``report``).
"""

from __future__ import annotations

import argparse

from . import rope

STUDIES = {"rope": (rope, "RoPE in SegFormer's attention: paired seeds, 95%% intervals, extrapolation, a control")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    kinds = p.add_subparsers(dest="study", metavar="STUDY", required=True)
    for name, (module, summary) in STUDIES.items():
        s = kinds.add_parser(name, help=summary)
        module.add_arguments(s)
        s.set_defaults(study_run=module.run)


def run(args: argparse.Namespace) -> int:
    return args.study_run(args)
