"""``GET /metrics`` in Prometheus' text format (prometheus_client, one registry per app):
requests by endpoint and status (499: the client went away first), the latency of
``POST /``, batch sizes and times, and the queue's depth."""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

ENDPOINTS = ("/", "/health", "/info", "/metrics", "/docs", "/openapi.json")  # others count as "other"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    def __init__(self, queue_depth: Callable[[], int]):
        self.registry = CollectorRegistry()
        self.requests = Counter("segformer_lab_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("segformer_lab_request_seconds", "Latency of POST / (segmentation), seconds",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("segformer_lab_batch_size", "Images per batch run through the model",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("segformer_lab_batch_seconds", "Time to run one batch, seconds",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        depth = Gauge("segformer_lab_queue_depth", "Requests waiting for a batch", registry=self.registry)
        depth.set_function(queue_depth)

    def batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self, app):
        """An ASGI middleware counting every HTTP answer by endpoint and status, and timing
        ``POST /``."""

        async def counted(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            started, status = time.perf_counter(), {"code": 500}

            async def send_status(message):
                if message["type"] == "http.response.start":
                    status["code"] = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                path = scope["path"] if scope["path"] in ENDPOINTS else "other"
                self.requests.labels(path, str(status["code"])).inc()
                if path == "/" and scope["method"] == "POST":
                    self.latency.observe(time.perf_counter() - started)

        return counted
