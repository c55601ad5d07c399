"""``ServeOptions``: what a deployer bounds. Light (no torch, no FastAPI), so that
``segformer-lab serve --help`` is built from it at once."""

from __future__ import annotations

from dataclasses import dataclass, fields

# field -> (its command-line option, metavar, help, the least value it takes)
OPTIONS = {
    "max_batch": ("--max-batch", "N", "images run through the model together at most (1: no batching)", 1),
    "batch_wait_ms": ("--batch-wait", "MS", "how long the first request of a batch waits for others", 0),
    "workers": ("--workers", "N", "batches run at once, each in its own thread (the weights are shared)", 1),
    "queue_length": ("--queue-length", "N", "requests that may wait for a batch; one more is answered 503 "
                     "with Retry-After", 1),
    "request_timeout_s": ("--request-timeout", "S", "seconds a request may wait for its answer; then 504, and "
                          "its queue slot is freed", 0.001),
    "max_request_bytes": ("--max-request-bytes", "B", "largest request body (larger: 413)", 1),
    "max_pixels": ("--max-pixels", "P", "largest image, width x height, read from the file's header before "
                   "any pixel is decoded (larger: 413)", 1),
}


@dataclass(frozen=True)
class ServeOptions:
    max_batch: int = 8
    batch_wait_ms: float = 5.0
    workers: int = 1
    queue_length: int = 64
    request_timeout_s: float = 30.0
    max_request_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096

    def __post_init__(self) -> None:
        for field in fields(self):
            value, (flag, _, _, least) = getattr(self, field.name), OPTIONS[field.name]
            if not value >= least:
                raise ValueError(f"{field.name} ({flag}) must be >= {least:g}, got {value}")
