"""``serve``: the app in uvicorn, on a socket bound up front (a port in use is one line,
and port 0 picks a free one, which the log names), stopped gracefully: on SIGTERM or
Ctrl-C the server stops accepting, finishes the requests in flight (up to
``GRACEFUL_S``) and exits."""

from __future__ import annotations

import logging
import socket
from typing import Any

import uvicorn

from ..inference import open_segmenter
from .app import create_app
from .options import ServeOptions

log = logging.getLogger("segformer_lab")

BACKLOG = 2048  # uvicorn's
GRACEFUL_S = 8  # in-flight requests finish within this on SIGTERM; the process is gone within 10 s


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)  # connections wait from now on, while uvicorn starts
    except OSError as err:
        sock.close()
        raise ValueError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err})") from None
    return sock


def serve(source: str, options: ServeOptions = ServeOptions(), host: str = "127.0.0.1", port: int = 8000,
          **segmenter_options: Any) -> None:
    """Serves ``open_segmenter(source, **segmenter_options)`` until SIGTERM or Ctrl-C. The
    model opens once the port listens (``/health`` answers 503 meanwhile); if it cannot be
    opened, the server stops and the error is raised here."""
    sock = bind(host, port)
    failures: list[BaseException] = []

    def stop(err: BaseException) -> None:
        failures.append(err)
        server.should_exit = True

    app = create_app(lambda: open_segmenter(source, **segmenter_options), options, source=str(source),
                     on_failure=stop)
    config = uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=GRACEFUL_S, access_log=False)
    server = uvicorn.Server(config)
    bound_host, bound_port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d (the page: GET /, Hugging Face's image segmentation: POST /)",
             bound_host, bound_port)
    server.run(sockets=[sock])
    if failures:
        raise failures[0]
