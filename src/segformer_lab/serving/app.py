"""The HTTP app: ``create_app(open_segmenter, options)`` -> a FastAPI application.

``POST /`` speaks Hugging Face's image-segmentation contract (``huggingface_hub``'s
``InferenceClient(model="http://HOST:PORT").image_segmentation(image)`` works as is),
``GET /`` is the page for browsers (``page.html``), ``GET /health``, ``GET /info``,
``GET /metrics``; FastAPI adds ``/openapi.json`` and ``/docs``. Every error is JSON
``{"error": "one line"}``.

The model is opened and warmed up in a thread once the server runs, so the port answers
at once: ``/health`` says 503 until the model is ready (a load balancer's readiness
check), then 200. Images are decoded and answers encoded in threads; the model runs in
``Batcher`` batches; the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import logging
import platform
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import metadata, resources
from typing import Callable

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from ..inference import OnnxSegmenter, Segmenter
from .batcher import Batcher, QueueFull
from .metrics import ServerMetrics
from .options import ServeOptions
from .requests import OUTPUTS, RequestError, choose_output, decode_checked, parse_payload, read_body
from .responses import render

log = logging.getLogger("segformer_lab")

WARM_UP_SIZE = (64, 64)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split())}, status_code=status, headers=headers)


def preprocessing(segmenter: Segmenter) -> dict:
    """How images reach the model: the segmenter's ``Preprocessing`` (the model's own, the
    one its training stored; a server option over it), the line saying which and where it
    came from, and the test-time augmentation."""
    return {**segmenter.preprocessing.to_dict(), "scales": list(segmenter.scales), "flip": segmenter.flip,
            "source": segmenter.preprocessing_line}


def describe(segmenter: Segmenter, source: str, options: ServeOptions) -> dict:
    """``GET /info``: the model, its classes, preprocessing, precision, limits, versions."""
    if isinstance(segmenter, OnnxSegmenter):
        name, backend, precision = segmenter.model.name, "onnxruntime", segmenter.model.precision
    else:
        name, backend = segmenter.model.config.name, "pytorch"
        precision = str(next(segmenter.model.parameters()).dtype).removeprefix("torch.")
    versions = {"python": platform.python_version()}
    for package in ("segformer-lab", "torch", "onnxruntime", "fastapi", "uvicorn", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "model": name, "source": source, "backend": backend, "precision": precision, "device": str(segmenter.device),
        "classes": [{"id": k, "name": n, "color": [int(c) for c in segmenter.palette[k]]}
                    for k, n in enumerate(segmenter.class_names)],
        "preprocessing": preprocessing(segmenter), "limits": asdict(options), "outputs": list(OUTPUTS),
        "versions": versions,
    }  # fmt: skip


def _predict_in_order(segmenter: Segmenter, rgbs: list[np.ndarray]) -> list:
    """One batch through the model, ``[(labels, confidence), ...]`` in the given order;
    images of equal size are put side by side (``predict_batch`` runs each run of equal
    sizes as one forward pass)."""
    order = sorted(range(len(rgbs)), key=lambda i: rgbs[i].shape)
    predicted = segmenter.predict_batch([rgbs[i] for i in order], confidence=True, batch_size=len(rgbs))
    results: list = [None] * len(rgbs)
    for position, i in enumerate(order):
        results[i] = predicted[position]
    return results


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read: the next message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class _State:
    """The app's model, once opened and warmed up (or why it could not be)."""

    def __init__(self):
        self.segmenter: Segmenter | None = None
        self.info: dict | None = None
        self.failure: str | None = None


def create_app(open_segmenter: Callable[[], Segmenter], options: ServeOptions = ServeOptions(), source: str = "",
               on_failure: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app serving what ``open_segmenter()`` returns (called in a thread at start-up;
    an error there is logged, kept for ``/health`` and passed to ``on_failure``)."""
    state = _State()
    server_metrics = ServerMetrics(lambda: batcher.depth)
    batcher = Batcher(lambda rgbs: _predict_in_order(state.segmenter, rgbs), options.max_batch,
                      options.batch_wait_ms / 1000, options.queue_length, options.workers, server_metrics.batch)
    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    def open_and_warm() -> None:
        try:
            segmenter = open_segmenter()
            segmenter.predict_batch([np.zeros((*WARM_UP_SIZE, 3), np.uint8)], confidence=True)
        except Exception as err:  # noqa: BLE001 - reported by /health and on_failure
            state.failure = f"{type(err).__name__}: {' '.join(str(err).split())}"
            log.error("the model could not be opened: %s", state.failure)
            if on_failure is not None:
                on_failure(err)
            return
        state.info = describe(segmenter, source, options)
        state.segmenter = segmenter
        log.info("serving %s (%s, %s): ready", state.info["model"], state.info["backend"], state.info["precision"])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        opening = asyncio.create_task(asyncio.to_thread(open_and_warm))
        yield
        await opening  # a model still loading finishes first
        await batcher.stop()

    app = FastAPI(title="segformer-lab serve", version=metadata.version("segformer-lab"), lifespan=lifespan,
                  description="Semantic segmentation in Hugging Face's image-segmentation contract: POST an image "
                  "to /. GET / in a browser for a page to try it.")
    app.add_middleware(lambda inner: server_metrics.middleware(inner))

    @app.exception_handler(RequestError)
    async def refused(request: Request, err: RequestError):
        return error_response(err.status, err.message, err.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException):
        return error_response(err.status_code, err.detail, getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        first = err.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(err).__name__}: {err}")

    def ready() -> Segmenter:
        if state.segmenter is None:
            raise RequestError(503, f"the model failed to load: {state.failure}" if state.failure
                               else "the model is loading", {"Retry-After": "1"})
        return state.segmenter

    @app.get("/", response_class=HTMLResponse, summary="The page; /info's JSON for Accept: application/json")
    async def home(request: Request):
        accept = request.headers.get("accept", "")
        if "application/json" in accept and "text/html" not in accept:
            ready()
            return JSONResponse(state.info)
        return HTMLResponse(page)

    @app.post("/", summary="Segment an image (Hugging Face image-segmentation)", openapi_extra={"requestBody": {
        "required": True, "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object", "required": ["inputs"], "properties": {
                "inputs": {"type": "string", "description": "the image, base64"},
                "parameters": {"type": "object", "description": "threshold: leave out segments scoring below it"},
            }}},
        }}})  # fmt: skip
    async def segment(request: Request, output: str | None = Query(None, description=", ".join(OUTPUTS)),
                      alpha: float = Query(0.5, ge=0.0, le=1.0, description="overlay opacity")) -> Response:
        segmenter = ready()
        chosen, media_type = choose_output(output, request.headers.get("accept"))
        body = await read_body(request, options.max_request_bytes)
        payload = parse_payload(body, request.headers.get("content-type"))
        if batcher.full():  # refused before decoding: no work for a request that cannot wait
            raise RequestError(503, f"the queue is full ({options.queue_length} requests waiting)",
                               {"Retry-After": str(batcher.retry_after())})
        rgb = await asyncio.to_thread(decode_checked, payload.image, options.max_pixels)
        try:
            future = batcher.submit(rgb)
        except QueueFull as err:
            raise RequestError(503, str(err), {"Retry-After": str(err.retry_after)}) from None
        watcher = asyncio.ensure_future(_client_gone(request))
        try:
            done, _ = await asyncio.wait({future, watcher}, timeout=options.request_timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if future not in done:
            future.cancel()  # out of the queue, if it was still waiting
            if watcher in done:
                raise RequestError(499, "the client closed the connection")
            raise RequestError(504, f"no answer within the request timeout of {options.request_timeout_s:g} s")
        labels, confidence = future.result()
        content = await asyncio.to_thread(render, chosen, media_type, segmenter, rgb, labels, confidence,
                                          payload.parameters, alpha)
        return Response(content, media_type=media_type)

    @app.get("/health", summary="200 once the model is loaded and warmed up, 503 before")
    async def health():
        ready()
        return {"status": "ok", "model": state.info["model"]}

    @app.get("/info", summary="The model, its classes and colours, preprocessing, precision, limits, versions")
    async def info():
        ready()
        return state.info

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus():
        return Response(server_metrics.text(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
