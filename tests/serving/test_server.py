"""``segformer-lab serve``: Hugging Face's client against the server, the answers and
their equality with ``Segmenter``, and the server bounded under bad input and load
(each refusal a JSON one-liner, and the server serving on)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from helpers import EXPORTED_CLASSES
from PIL import Image
from servers import picture, request, wait_ready

from segformer_lab.cli import main
from segformer_lab.inference import OnnxSegmenter, open_segmenter
from segformer_lab.serving import ServeOptions

huggingface_hub = pytest.importorskip("huggingface_hub")


def png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB and whose data is one
    compressed row: what a decompression bomb looks like to a server before decoding."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * (3 * width + 1))) \
        + chunk(b"IEND", b"")


def metric(url: str, name: str) -> float:
    """One sample of ``GET /metrics`` (0 when absent), e.g. ``segformer_lab_batch_size_count``."""
    text = request(url, path="/metrics")[2].decode()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def error_of(answer) -> str:
    status, headers, body = answer
    assert headers["content-type"] == "application/json", (status, body)
    document = json.loads(body)
    assert list(document) == ["error"] and "\n" not in document["error"], document
    return document["error"]


@pytest.fixture(scope="module")
def url(serve_app):
    return serve_app(ServeOptions(max_batch=4, batch_wait_ms=2, max_request_bytes=100_000, max_pixels=200 * 200))


def test_huggingface_client_gets_the_segmenters_segments(url, segmenter, tmp_path):
    rgb = picture(48, 64)
    expected = segmenter.segments(rgb)
    assert len(expected) > 1  # the test model sees several classes
    client = huggingface_hub.InferenceClient(model=url)
    path = tmp_path / "photo.png"
    path.write_bytes(png(rgb))
    for image in (png(rgb), str(path)):  # raw bytes; a file (InferenceClient reads it)
        answer = client.image_segmentation(image)
        assert [a.label for a in answer] == [e["label"] for e in expected]
        for got, want in zip(answer, expected):
            assert got.score == pytest.approx(want["score"], abs=1e-6)
            assert got.mask.size == (64, 48)
            np.testing.assert_array_equal(np.asarray(got.mask), np.asarray(want["mask"]))
    # with a parameter the client sends JSON {"inputs": base64, "parameters": ...}
    threshold = float(np.median([e["score"] for e in expected]))
    kept = client.image_segmentation(png(rgb), threshold=threshold)
    assert [a.label for a in kept] == [e["label"] for e in expected if e["score"] >= threshold]


def test_label_png_overlay_and_maps_equal_the_segmenters(url, segmenter):
    rgb = picture(40, 56, seed=1)
    labels, confidence = segmenter.predict(rgb, confidence=True)
    body = png(rgb)
    status, headers, content = request(url, "POST", "/", body, {"Accept": "image/png"})
    assert status == 200 and headers["content-type"] == "image/png"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(content))), labels)
    status, headers, content = request(url, "POST", "/?output=overlay&alpha=0.4", body)
    assert status == 200 and headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(content)).size[0] >= 56  # the legend may widen it
    status, headers, content = request(url, "POST", "/?output=overlay", body, {"Accept": "image/jpeg"})
    assert status == 200 and content[:2] == b"\xff\xd8"
    encoded = json.dumps({"inputs": base64.b64encode(body).decode()}).encode()
    status, _, content = request(url, "POST", "/?output=maps", encoded, {"Content-Type": "application/json"})
    maps = json.loads(content)
    assert (maps["height"], maps["width"], maps["labels_dtype"]) == (40, 56, "uint8")
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(maps["labels"]), np.uint8).reshape(40, 56), labels)
    got = np.frombuffer(base64.b64decode(maps["confidence"]), np.uint8).reshape(40, 56)
    np.testing.assert_array_equal(got, np.rint(confidence * 255).astype(np.uint8))


def test_page_info_health_metrics_and_openapi(url):
    status, headers, body = request(url, headers={"Accept": "text/html,application/xhtml+xml,*/*"})
    assert status == 200 and headers["content-type"].startswith("text/html") and b"<html" in body
    info = json.loads(request(url, path="/info")[2])
    assert [c["name"] for c in info["classes"]] == ["sky", "road", "car"]
    assert info["backend"] == "pytorch" and info["precision"] == "float32"
    served = info["preprocessing"]  # the model's own, as stored with its weights
    assert served["size"] == [48, 64] and served["mean"] == pytest.approx([0.5] * 3) and served["std"] == [0.25] * 3
    assert served["source"].startswith("preprocessing: resize to 48x64") and "(stored with " in served["source"]
    assert {"torch", "fastapi", "uvicorn"} <= set(info["versions"])
    assert json.loads(request(url, path="/health")[2])["status"] == "ok"
    assert request(url, path="/openapi.json")[0] == 200
    assert request(url, "POST", "/", png(picture()))[0] == 200
    before = metric(url, 'segformer_lab_requests_total{endpoint="/health",status="200"}')
    request(url, path="/health")
    assert metric(url, 'segformer_lab_requests_total{endpoint="/health",status="200"}') == before + 1
    for name in ("segformer_lab_request_seconds_count", "segformer_lab_batch_size_count"):
        assert metric(url, name) >= 1, name
    assert "segformer_lab_queue_depth 0.0" in request(url, path="/metrics")[2].decode()


@pytest.mark.parametrize("body, headers, path, status, words", [
    (b"x" * 100_001, {}, "/", 413, "100001 bytes"),  # Content-Length over the limit
    (png_header_only(30000, 30000), {}, "/", 413, "900000000 pixels"),  # a decompression bomb: refused from its header
    (png_header_only(201, 200), {}, "/", 413, "201x200"),  # just over --max-pixels
    (b"GIF89a but not really", {}, "/", 415, "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, {}, "/", 415, "not an image"),
    (png(picture())[:300], {}, "/", 400, "cannot decode"),  # a truncated file
    (b"{not json", {"Content-Type": "application/json"}, "/", 400, "does not parse"),
    (b'{"inputs": "@@@"}', {"Content-Type": "application/json"}, "/", 400, "base64"),
    (b'{"inputs": 3}', {"Content-Type": "application/json"}, "/", 422, "inputs"),
    (b'{"inputs": "", "parameters": {"top_k": 1}}', {"Content-Type": "application/json"}, "/", 422, "top_k"),
    (b"", {}, "/", 400, "empty body"),
    (png(picture()), {}, "/?output=mask", 422, "unknown output"),
    (png(picture()), {}, "/?alpha=2", 422, "alpha"),
    (None, {}, "/nowhere", 404, "Not Found"),
])  # fmt: skip
def test_bad_requests_are_refused_in_one_json_line(url, body, headers, path, status, words):
    answer = request(url, "POST" if body is not None else "GET", path, body, headers)
    assert answer[0] == status, answer
    assert words in error_of(answer)
    assert request(url, "POST", "/", png(picture()))[0] == 200  # and the server serves on


def test_a_body_over_the_limit_without_content_length_is_refused_while_it_streams(url):
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(30):  # 30 chunks of 4 KiB, past the 100 kB limit
            try:
                sock.sendall(b"1000\r\n" + b"y" * 4096 + b"\r\n")
            except OSError:  # the server answered and closed: fine
                break
        answer = ""
        while not answer.endswith("}"):  # the headers, then the JSON body
            received = sock.recv(65536).decode("latin-1")
            assert received, f"the connection closed after {answer!r}"
            answer += received
    assert answer.startswith("HTTP/1.1 413") and "exceeds the limit of 100000 bytes" in answer


def test_health_is_503_until_the_model_is_ready(serve_app, segmenter):
    release = threading.Event()

    def slow_open():
        release.wait(30)
        return segmenter

    url = serve_app(open_segmenter=slow_open)
    answer = request(url, path="/health")
    assert answer[0] == 503 and "loading" in error_of(answer)
    assert request(url, "POST", "/", png(picture()))[0] == 503
    release.set()
    wait_ready(url)


def _post_in_thread(url: str, body: bytes, answers: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.append(request(url, "POST", "/", body)))
    thread.start()
    return thread


def _wait_for(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_a_full_queue_answers_503_with_retry_after(serve_app):
    # batches wait 1.5 s for company: two requests fill the queue meanwhile
    url = serve_app(ServeOptions(max_batch=8, batch_wait_ms=1500, queue_length=2))
    answers: list = []
    threads = [_post_in_thread(url, png(picture(seed=i)), answers) for i in range(2)]
    _wait_for(lambda: metric(url, "segformer_lab_queue_depth") == 2)
    refused = request(url, "POST", "/", png(picture()))
    assert refused[0] == 503 and int(refused[1]["retry-after"]) >= 1 and "queue is full" in error_of(refused)
    for thread in threads:
        thread.join(30)
    assert [a[0] for a in answers] == [200, 200]
    assert metric(url, "segformer_lab_batch_size_sum") == 2  # the two ran as one batch


def test_workers_run_batches_side_by_side(serve_app, segmenter):
    url = serve_app(ServeOptions(max_batch=2, batch_wait_ms=50, workers=2))
    rgbs = [picture(40, 40 + 8 * i, seed=i) for i in range(6)]  # several sizes: grouped within a batch
    answers: list = []
    threads = [threading.Thread(target=lambda i=i: answers.append(
        (i, request(url, "POST", "/", png(rgbs[i]), {"Accept": "image/png"})))) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for i, (status, _, body) in sorted(answers, key=lambda a: a[0]):
        assert status == 200
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(body))), segmenter.predict(rgbs[i]))
    assert metric(url, "segformer_lab_batch_size_sum") == 6


def test_a_timed_out_request_is_504_and_frees_its_slot(serve_app):
    url = serve_app(ServeOptions(max_batch=8, batch_wait_ms=2000, queue_length=1, request_timeout_s=0.3))
    for _ in range(2):  # the second fits in the one slot only if the first freed it
        answer = request(url, "POST", "/", png(picture()))
        assert answer[0] == 504 and "timeout" in error_of(answer)
    assert metric(url, "segformer_lab_queue_depth") == 0
    time.sleep(2.2)  # past the batch wait: nothing ran for the requests that gave up
    assert metric(url, "segformer_lab_batch_size_count") == 0


def test_a_client_that_disconnects_leaves_no_work_behind(serve_app):
    url = serve_app(ServeOptions(max_batch=8, batch_wait_ms=1500))
    body = png(picture())
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        _wait_for(lambda: metric(url, "segformer_lab_queue_depth") == 1)
    _wait_for(lambda: metric(url, 'segformer_lab_requests_total{endpoint="/",status="499"}') == 1)
    assert metric(url, "segformer_lab_queue_depth") == 0
    time.sleep(1.7)
    assert metric(url, "segformer_lab_batch_size_count") == 0


def test_the_command_serves_and_stops_gracefully_on_sigterm(model_dir, tmp_path):
    """``segformer-lab serve``: the port from the log; a request in flight when SIGTERM
    arrives is answered, new connections are refused, the process is gone within 10 s
    (uvicorn re-raises the signal once it has stopped: the status says SIGTERM)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), *sys.path) if p)}
    command = [sys.executable, "-m", "segformer_lab.cli", "serve", str(model_dir), "--port", "0",
               "--batch-wait", "1000"]
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_for(lambda: re.search(r"listening on (http://\S+)", log.read_text()), 60)
        url = re.search(r"listening on (http://\S+)", log.read_text()).group(1)
        wait_ready(url, 60)
        answers: list = []
        thread = _post_in_thread(url, png(picture()), answers)
        _wait_for(lambda: metric(url, "segformer_lab_queue_depth") == 1)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        thread.join(10)
        assert [a[0] for a in answers] == [200], log.read_text()
        assert process.wait(10) in (0, -signal.SIGTERM)
        assert time.monotonic() - stopped < 10
        with pytest.raises(OSError):
            request(url, path="/health", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()


def test_command_mistakes_are_one_line(model_dir, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mistakes = {
            "missing": (["serve", str(tmp_path / "missing"), "--port", "0"], "missing"),
            "option": (["serve", str(model_dir), "--max-batch", "0"], "max_batch (--max-batch) must be >= 1, got 0"),
            "port": (["serve", str(model_dir), "--port", str(port)], f"--port {port}: cannot listen there"),
        }
        for name, (argv, words) in mistakes.items():
            assert main(argv) == 2, name
            err = capsys.readouterr().err.strip().splitlines()[-1]
            assert err.startswith("segformer-lab serve: error:") and words in err, (name, err)


def test_an_onnx_file_is_served_through_onnxruntime(serve_app, exported_b0):
    _, onnx_file = exported_b0
    url = serve_app(open_segmenter=lambda: open_segmenter(onnx_file))
    wait_ready(url)
    info = json.loads(request(url, path="/info")[2])
    assert (info["backend"], info["precision"]) == ("onnxruntime", "float32")
    assert [c["name"] for c in info["classes"]] == list(EXPORTED_CLASSES)
    rgb = picture(40, 48, seed=3)
    expected = OnnxSegmenter(onnx_file).segments(rgb)
    answer = huggingface_hub.InferenceClient(model=url).image_segmentation(png(rgb))
    assert [a.label for a in answer] == [e["label"] for e in expected]
    for got, want in zip(answer, expected):
        np.testing.assert_array_equal(np.asarray(got.mask), np.asarray(want["mask"]))


def test_the_commands_options_load_neither_torch_nor_fastapi():
    """``segformer-lab serve --help`` is built from ``ServeOptions`` alone (the serving
    package exports the rest lazily)."""
    code = ("import sys; from segformer_lab.cli import build_parser; build_parser('serve'); "
            "print(sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'PIL') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), *sys.path) if p)}
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert loaded.stdout.strip() == "[]"
