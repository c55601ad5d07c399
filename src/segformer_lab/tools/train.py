"""``segformer-lab train``: train an experiment config into a run directory, or resume one."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from ..engine import NonFiniteLossError, TrainingStopped, resolve_config, train
from ..engine.rundir import CONFIG_FILE

RUN_DIR_ENV = "SEGFORMER_LAB_RUN_DIR"  # lets DDP worker processes (re-launched with our argv) find the run
STOPPED_BY_SIGTERM = 143  # the exit status of a process that SIGTERM ended (128 + 15), as a scheduler expects


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Train from a YAML experiment (see configs/ and docs/training.md), writing the resolved "
        "config, checkpoints, best weights and logs into a run directory; or continue a run exactly "
        "with --resume RUN_DIR."
    )
    p.add_argument("config", nargs="?", metavar="CONFIG", help="experiment YAML file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config value by dot path, read as YAML (e.g. optim.lr=1e-4, "
                   "trainer.devices=2, data.root=/data/ade); repeatable")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<config name>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint; --set may change "
                   "optim.*, the trainer's length, logging and hardware, checkpoint.*, data.num_workers and "
                   "data.val_batch_size, nothing else")
    p.add_argument("--overwrite", action="store_true",
                   help="start over in a run directory that holds an earlier run: the files that run wrote are "
                   "deleted when the new one starts training (nothing else; files no run wrote are never replaced)")


def run(args: argparse.Namespace) -> int:
    logging.getLogger("lightning").propagate = False  # it has its own handler: no double lines

    if (args.config is None) == (args.resume is None):
        raise ValueError("give either CONFIG or --resume RUN_DIR")
    if args.resume:
        if args.out or args.overwrite:
            raise ValueError(f"{'--out' if args.out else '--overwrite'} does not go with --resume: the run continues "
                             "in its own directory")
        run_dir = Path(args.resume)
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"{run_dir / CONFIG_FILE} not found: is {run_dir} a run directory?")
        config = resolve_config(run_dir / CONFIG_FILE, args.overrides)
    else:
        config = resolve_config(args.config, args.overrides)
        run_dir = Path(args.out or os.environ.get(RUN_DIR_ENV)
                       or Path("runs") / f"{Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}")
        if not args.out:
            os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        train(config, run_dir, resume=bool(args.resume), overwrite=args.overwrite)
    except NonFiniteLossError as err:
        print(f"segformer-lab train: error: {err}", file=sys.stderr)
        return 1
    except TrainingStopped as err:
        print(f"segformer-lab train: {err}", file=sys.stderr)
        return STOPPED_BY_SIGTERM
    print(f"run directory: {run_dir}")
    return 0
