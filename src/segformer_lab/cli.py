"""``segformer-lab``: one command-line entry point with a subcommand per tool.

Each subcommand lives in a module of ``segformer_lab.tools`` that provides
``add_parser(subparsers)`` (declares its arguments) and ``run(args) -> int``; this file
only wires them together.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> module in segformer_lab.tools
COMMANDS = {
    "models": "catalog",
    "profile": "profile",
    "bench": "bench",
    "train": "train",
    "eval": "evaluate",
    "data": "data",
    "export": "export",
    "predict": "predict",
    "demo": "demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segformer-lab",
        description="Efficient semantic segmentation with the SegFormer family: "
        "list, profile and benchmark models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command, module in COMMANDS.items():
        tool = importlib.import_module(f"segformer_lab.tools.{module}")
        tool.add_parser(sub, command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except (KeyError, ValueError, FileNotFoundError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"segformer-lab {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
