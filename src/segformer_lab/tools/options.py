"""Argument types the tools share: a wrong number is refused by the parser, up front and
once, as one line naming the option (``argument --crop: ...``), not per image or deep in a run.
Also the options ``eval`` and ``predict`` share: the preprocessing ones (over the model's
own) and those of an ONNX file without our metadata."""

from __future__ import annotations

import argparse
from typing import Any

from ..inference import MODES, NORMALIZATIONS
from ..inference.logits import MAX_SCALE


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def scale(text: str) -> float:
    """A test-time scale: a number in (0, ``MAX_SCALE``] (not 0, negative, nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= MAX_SCALE:  # also false for nan
        raise argparse.ArgumentTypeError(f"must be in (0, {MAX_SCALE:g}], got {text!r}")
    return value


def positive_int_list(text: str) -> list[int]:
    """``S1,S2,...``: one or more positive integers separated by commas."""
    try:
        return [positive_int(item) for item in text.split(",")]
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}") from None


def data_spec(text: str) -> tuple[str, str]:
    """``FORMAT:ROOT`` (e.g. ``ade20k:/data/ADEChallengeData2016``) as ``(format, root)``."""
    fmt, sep, root = text.partition(":")
    if not sep or not fmt or not root:
        raise argparse.ArgumentTypeError(f"expected FORMAT:ROOT, e.g. ade20k:/data/ade, got {text!r}")
    return fmt, root


PREPROCESSING_OPTIONS = ("size", "scale", "multiple_of", "mode", "crop", "stride")


def add_preprocessing_arguments(p: argparse.ArgumentParser) -> None:
    """The options that change the model's preprocessing (``data.Preprocessing``; default:
    the one stored with the model, else the defaults; the command prints which)."""
    group = p.add_argument_group("preprocessing (default: the model's own, stored with it; else the defaults)")
    resize = group.add_mutually_exclusive_group()
    resize.add_argument("--size", nargs=2, type=positive_int, metavar=("H", "W"),
                        help="resize images to H x W for the model")
    resize.add_argument("--scale", nargs=2, type=positive_int, metavar=("LONG", "SHORT"),
                        help="resize keeping the aspect ratio, long side <= LONG and short side <= SHORT "
                        "(mmseg's 2048 512)")
    resize.add_argument("--own-size", action="store_true", help="no resize: images at their own size")
    group.add_argument("--multiple-of", type=positive_int, metavar="N",
                       help="round the model's input sides up to multiples of N (32: mmseg's AlignedResize)")
    group.add_argument("--mode", choices=MODES, help="whole image, or sliding windows for large images")
    group.add_argument("--crop", type=positive_int, help="sliding window size")
    group.add_argument("--stride", type=positive_int, help="sliding window stride")


def preprocessing_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``add_preprocessing_arguments`` values (None: not given), for ``choose_preprocessing``."""
    return {"own_size": args.own_size, **{key: getattr(args, key) for key in PREPROCESSING_OPTIONS}}


def add_onnx_arguments(p: argparse.ArgumentParser, num_classes: bool = True) -> None:
    """``--normalization``, ``--mean``, ``--std`` (and ``--num-classes``): what a ``.onnx``
    file exported elsewhere (no segformer-lab metadata) needs; they override the metadata's
    normalisation of one of ours."""
    group = p.add_argument_group("an .onnx file without segformer-lab metadata (exported elsewhere)")
    if num_classes:
        group.add_argument("--num-classes", type=positive_int, metavar="K", help="its number of classes")
    group.add_argument("--normalization", choices=list(NORMALIZATIONS),
                       help="its input normalisation: imagenet (mean/std of ImageNet), half ([-1, 1]), unit ([0, 1])")
    group.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                       help="its normalisation, pixel = (rgb / 255 - mean) / std (overrides --normalization)")
    group.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="see --mean")


def onnx_options(args: argparse.Namespace) -> dict[str, Any]:
    """``num_classes``, ``mean`` and ``std`` from ``add_onnx_arguments``' options, those given only."""
    mean, std = NORMALIZATIONS[args.normalization] if args.normalization else (None, None)
    mean, std = args.mean or mean, args.std or std
    if (mean is None) != (std is None):
        raise ValueError("--mean and --std go together (or name a --normalization for the other)")
    options = {"num_classes": getattr(args, "num_classes", None), "mean": mean, "std": std}
    return {key: value for key, value in options.items() if value is not None}
