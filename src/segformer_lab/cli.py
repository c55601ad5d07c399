"""``segformer-lab``: one command-line entry point with a subcommand per tool.

Each subcommand is a module of ``segformer_lab.tools`` that provides
``add_arguments(parser)`` (its description and options) and ``run(args) -> int``. Only
the module of the subcommand being run is imported: ``segformer-lab --help`` lists the
commands from the table below without importing torch, and ``segformer-lab train``
never pays for onnxruntime or matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> (module in segformer_lab.tools, one line for the command list)
COMMANDS = {
    "models": ("catalog", "list registered models"),
    "profile": ("profile", "count parameters and MACs"),
    "bench": ("bench", "measure inference latency or training-step time"),
    "train": ("train", "train a model from an experiment config"),
    "eval": ("evaluate", "evaluate a checkpoint: mIoU, mAcc, aAcc, per class"),
    "data": ("data", "generate datasets"),
    "export": ("export", "export a model to ONNX (checked with onnxruntime)"),
    "predict": ("predict", "predict label maps (and colour overlays) for images"),
    "demo": ("demo", "the main job: train and compare SegFormer variants on an embedded dataset, with a report"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``command`` (the one subcommand whose tool is
    imported); the other subcommands are listed by name and summary only."""
    parser = argparse.ArgumentParser(
        prog="segformer-lab",
        description="Efficient semantic segmentation with the SegFormer family: list, profile, benchmark, train, "
        "evaluate, export and run models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=summary, description=summary)
        if name == command:
            tool = importlib.import_module(f"segformer_lab.tools.{module}")
            tool.add_arguments(command_parser)
            command_parser.set_defaults(run=tool.run)
    return parser


def _command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv``: the first word that is not an option (the only
    top-level option, ``-v``, takes no value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except (KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"segformer-lab {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
