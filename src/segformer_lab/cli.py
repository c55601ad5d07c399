"""``segformer-lab``: one command-line entry point with a subcommand per tool.

Each subcommand is a module of ``segformer_lab.tools`` that provides
``add_arguments(parser)`` (its description and options) and ``run(args) -> int``; a
command with actions of its own (``data check``) names the action in ``args.action``. Only
the module of the subcommand being run is imported: ``segformer-lab --help`` lists the
commands from the table below without importing torch, and ``segformer-lab train``
never pays for onnxruntime or matplotlib.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import traceback

# subcommand -> (module in segformer_lab.tools, one line for the command list)
COMMANDS = {
    "models": ("catalog", "list registered models"),
    "profile": ("profile", "count parameters and MACs"),
    "bench": ("bench", "measure inference latency or training-step time"),
    "train": ("train", "train a model from an experiment config"),
    "eval": ("evaluate", "evaluate a checkpoint: mIoU, mAcc, aAcc, per class"),
    "data": ("data", "generate, check and show datasets"),
    "export": ("export", "export a model to ONNX (checked with onnxruntime)"),
    "predict": ("predict", "predict label maps (and colour overlays) for images"),
    "serve": ("serve", "serve a model over HTTP (Hugging Face's image-segmentation API) with a page to try it"),
    "demo": ("demo", "the main job: train and compare SegFormer variants on an embedded dataset, with a report"),
    "study": ("study", "paired-seed studies with confidence intervals: study rope (RoPE in SegFormer, with a control)"),
}


class OneLineParser(argparse.ArgumentParser):
    """Reports a wrong option as one line, ``segformer-lab CMD: error: ...``, like every other
    user error (argparse would print the whole usage first); exit status 2, as argparse."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with the options of ``command`` (the one subcommand whose tool is
    imported); the other subcommands are listed by name and summary only."""
    parser = OneLineParser(
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


# a path the user named that cannot be used as asked: one line naming it
FILE_SYSTEM_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
# faults of the machine, not of the code: a full disk, a read-only file system
MACHINE_ERRNOS = (errno.ENOSPC, errno.EROFS)


def user_error(err: BaseException) -> bool:
    """Whether ``err`` is a mistake or fault of the user's input or machine, told in one line:
    any error class of this project (CheckpointError, ConfigError, DataError, ExportError,
    NonFiniteLossError, DiskFullError, ...; matched by module, so that this needs no
    import of torch), a wrong value or key, a missing file, a full disk, a read-only file
    system. Anything else is a bug and keeps its traceback."""
    ours = any(cls.__module__.startswith("segformer_lab.") for cls in type(err).__mro__)
    machine = isinstance(err, OSError) and err.errno in MACHINE_ERRNOS
    return ours or machine or isinstance(err, (KeyError, ValueError) + FILE_SYSTEM_ERRORS)


def one_line(err: BaseException) -> str:
    """The message of a user error on one line; a file-system error says which path and
    what is wrong with it, without Python's ``[Errno N]`` prefix."""
    named = isinstance(err, FILE_SYSTEM_ERRORS) or (isinstance(err, OSError) and err.errno == errno.EROFS)
    if named and err.filename is not None and err.strerror:
        target = f" -> {err.filename2}" if err.filename2 else ""
        message = f"{err.filename}{target}: {err.strerror.lower()}"
        if isinstance(err, PermissionError):
            message += " (check the owner and mode of the path, or choose another)"
        elif err.errno == errno.EROFS:
            message += " (choose a path on a writable file system)"
    else:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(message.split())  # one line, whatever the message's own breaks


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand; a user error (``user_error``) is one line on stderr and exit
    status 2, with its traceback above it under ``-v``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except Exception as err:  # noqa: BLE001 - sorted by user_error; bugs are re-raised
        if not user_error(err):
            raise
        if args.verbose:
            traceback.print_exc()
        command = " ".join(filter(None, (args.command, getattr(args, "action", None))))  # data check, ...
        print(f"segformer-lab {command}: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
