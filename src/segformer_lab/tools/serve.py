"""``segformer-lab serve``: a model behind HTTP, in Hugging Face's image-segmentation
contract, with a page for browsers (see ``segformer_lab.serving``)."""

from __future__ import annotations

import argparse
from dataclasses import fields

from .. import serving
from ..serving.options import OPTIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Serve MODEL over HTTP: POST / takes an image (raw bytes or Hugging Face's JSON) and answers Hugging Face's "
        "image-segmentation list (huggingface_hub's InferenceClient(model='http://HOST:PORT') works as is), or the "
        "label PNG / overlay (?output=labels|overlay or Accept); GET / is a page to try it in a browser; "
        "/health, /info, /metrics, /docs. Stops gracefully on SIGTERM."
    )
    p.add_argument("model", metavar="MODEL", help="a run directory, checkpoint, Hugging Face Hub id "
                   "owner/name[@revision], exported .onnx file (any precision), or registered model name")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one, logged)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu; .onnx files: cpu)")
    p.add_argument("--num-classes", type=int, metavar="K", help="classes of a registered model name")
    defaults = serving.ServeOptions()
    for field in fields(defaults):
        flag, metavar, text, _ = OPTIONS[field.name]
        default = getattr(defaults, field.name)
        shown = f"{default:g}" if isinstance(default, float) else default
        p.add_argument(flag, dest=field.name, metavar=metavar, type=type(default), default=default,
                       help=f"{text} (default {shown})")


def run(args: argparse.Namespace) -> int:
    options = serving.ServeOptions(**{field.name: getattr(args, field.name) for field in fields(serving.ServeOptions)})
    extra = {"num_classes": args.num_classes} if args.num_classes else {}
    serving.serve(args.model, options, host=args.host, port=args.port, device=args.device, **extra)
    return 0
