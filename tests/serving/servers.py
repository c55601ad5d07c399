"""Servers of the app for the tests, in uvicorn in a thread of the test process, and a
plain HTTP client (http.client: the status, headers and body of any answer)."""

from __future__ import annotations

import http.client
import threading
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

import numpy as np
import uvicorn

from segformer_lab.serving.server import bind


def picture(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth colour gradients plus noise: a model sees more than one class in it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) * 127 / (width + height)], axis=2)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


@contextmanager
def running(app):
    """``app`` in uvicorn in a thread; yields its base URL, stops it on exit."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    try:
        yield "http://127.0.0.1:%d" % sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


def request(url: str, method: str = "GET", path: str = "/", body: bytes | None = None,
            headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    """``(status, headers (lower-case names), body)`` of one request."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def wait_ready(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while request(url, path="/health")[0] != 200:
        assert time.monotonic() < deadline, f"{url}/health never answered 200"
        time.sleep(0.05)
