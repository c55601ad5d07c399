"""Load test of ``segformer-lab serve`` (docs/benchmarks.md, "Serving under load").

    python benchmarks/serve_load.py [--model segformer_b0] [--size 512] [--clients 1,4,16,64]
        [--seconds 30] [--servers batched,unbatched,onnx,litserve] [--out DIR]

Each server is ``segformer-lab serve`` in a process of its own, as a user starts it:
``batched`` (``--max-batch 8 --batch-wait 5``), ``unbatched`` (``--max-batch 1``) and
``onnx`` (the model exported to a float32 ``.onnx`` file, served through onnxruntime,
batched); ``litserve`` is the same model and answer behind LitServe
(``litserve_app.py``, batched the same way; needs litserve importable, e.g. through
``--litserve-path``). Against each, for every client count N, N threads each POST the
same ``SIZE x SIZE`` JPEG in a loop over one keep-alive connection for ``--seconds``
(to LitServe as Hugging Face's JSON, base64, which is all it decodes): the table gives
throughput (answers 200 per second within the window), latency percentiles, errors (any
other answer or a failed connection), the mean batch the server ran and its time (from
/metrics; LitServe has none), the resident memory of the server's processes, sampled every
0.5 s, at its highest in the first and in the second half of the point (flat: the second
no higher), and their peaks (VmHWM), read from /proc. The model alone is timed first
with ``segformer-lab bench``'s ``benchmark`` (PyTorch at batch 1 and 8, onnxruntime at
batch 1) in this process, before any server starts, so that the serving cost can be
read off. The clients run on the same machine
as the server and take some of its CPU. Writes serve_load.md and serve_load.json to
``--out`` (default outputs/serve-load).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segformer_lab._io import atomic_write, write_json
from segformer_lab.export import export_onnx
from segformer_lab.inference import open_segmenter
from segformer_lab.models import create_model
from segformer_lab.serving.requests import decode_checked
from segformer_lab.serving.responses import render
from segformer_lab.tools.bench import benchmark

SERVERS = {  # name -> serve options (the ONNX one serves the exported file)
    "batched": ["--max-batch", "8", "--batch-wait", "5"],
    "unbatched": ["--max-batch", "1"],
    "onnx": ["--max-batch", "8", "--batch-wait", "5"],
    "litserve": ["8", "5"],  # litserve_app.py's MAX_BATCH BATCH_WAIT_MS
}
LITSERVE_APP = Path(__file__).with_name("litserve_app.py")


def photo(size: int) -> bytes:
    """A smooth colour field with noise, as JPEG (what a client typically sends)."""
    y, x = np.mgrid[0:size, 0:size]
    rgb = np.stack([x * 255 / size, y * 255 / size, (x + y) * 127 / size], axis=2)
    rgb = np.clip(rgb + np.random.default_rng(0).normal(0, 12, rgb.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (LitServe's workers are processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, found = [pid], []
    while tree:
        current = tree.pop()
        found.append(current)
        tree.extend(children.get(current, []))
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process and its descendants, summed, KiB."""
    total = {"VmRSS": 0, "VmHWM": 0}
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for key in total:
            found = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
            total[key] += int(found.group(1)) if found else 0
    return total


def batches(port: int, has_metrics: bool) -> tuple[float, float, float]:
    """The server's batches so far: how many, their images, their seconds (zeros without /metrics)."""
    if not has_metrics:
        return 0.0, 0.0, 0.0
    return tuple(metric(port, f"segformer_lab_batch_{name}") for name in ("size_count", "size_sum", "seconds_sum"))


def metric(port: int, name: str) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``segformer-lab serve MODEL OPTIONS --port 0`` in a process (the port from its log),
    or with ``litserve``, ``litserve_app.py MODEL PORT OPTIONS``."""

    def __init__(self, model: str, options: list[str], log: Path, litserve_path: str | None = None):
        env = dict(os.environ)
        if litserve_path is not None:
            self.port = free_port()
            command = [sys.executable, str(LITSERVE_APP), model, str(self.port), *options]
            env["PYTHONPATH"] = os.pathsep.join(p for p in (litserve_path, env.get("PYTHONPATH")) if p)
        else:
            command = [sys.executable, "-m", "segformer_lab.cli", "serve", model, "--port", "0", *options]
        with open(log, "w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while litserve_path is None and not (found := re.search(r"listening on http://[^:]+:(\d+)", log.read_text())):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the server did not start: {log.read_text()}")
            time.sleep(0.2)
        if litserve_path is None:
            self.port = int(found.group(1))
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the server did not get ready: {log.read_text()}")
            time.sleep(0.5)

    def stop(self) -> None:
        """SIGTERM to the server and its worker processes; SIGKILL to any left after 15 s."""
        members = process_tree(self.process.pid)
        for signal_, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            for member in filter(running, members):
                try:
                    os.kill(member, signal_)
                except ProcessLookupError:  # gone meanwhile
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.process.poll()  # reaps the server once it has exited
                if not any(map(running, members)):
                    return
                time.sleep(0.2)


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited and not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def load(port: int, pid: int, body: bytes, clients: int, seconds: float, path: str,
         content_type: str = "image/jpeg") -> dict:
    """``clients`` threads each POSTing ``body`` in a loop until ``seconds`` have passed:
    throughput (answers 200 over the time until the last answer: every request sent was
    worked on), latencies of the 200s, errors, and the server's RSS, sampled every 0.5 s,
    at its highest in the first and in the second half of that time (flat: no higher)."""
    latencies: list[float] = []
    errors: list[str] = []
    rss: list[tuple[float, int]] = []
    lock = threading.Lock()
    begin = time.monotonic()
    stop_at = begin + seconds

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                connection.request("POST", path, body=body, headers={"Content-Type": content_type})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
                failure = f"HTTP {response.status}"
            except OSError as err:
                ok, failure = False, type(err).__name__
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors.append(failure)
        connection.close()

    def sample() -> None:
        while any(thread.is_alive() for thread in senders):
            rss.append((time.monotonic() - begin, memory_kib(pid)["VmRSS"]))
            time.sleep(0.5)

    senders = [threading.Thread(target=client) for _ in range(clients)]
    sampler = threading.Thread(target=sample)
    for thread in (*senders, sampler):
        thread.start()
    for thread in (*senders, sampler):
        thread.join()
    elapsed = time.monotonic() - begin
    ms = np.array(latencies) * 1000
    halves = [[kib for at, kib in rss if (at < elapsed / 2) == first] or [0] for first in (True, False)]
    return {
        "clients": clients, "seconds": round(elapsed, 1), "answers": len(latencies),
        "throughput": len(latencies) / elapsed, "errors": len(errors), "error_kinds": sorted(set(errors)),
        **{f"p{q}_ms": float(np.percentile(ms, q)) if ms.size else None for q in (50, 95, 99)},
        "rss_first_half_kib": max(halves[0]), "rss_second_half_kib": max(halves[1]),
    }  # fmt: skip


def model_alone(model_name: str, size: int, threads: int | None) -> dict:
    """``bench``'s img/s of the model at batch 1 and 8 (PyTorch) and batch 1 (onnxruntime)."""
    one = benchmark(model_name, size=(size, size), batch=1, repeats=5, onnx=True, threads=threads)
    eight = benchmark(model_name, size=(size, size), batch=8, repeats=3, threads=threads)
    return {"torch_batch1": one["ours"]["images_per_s"], "torch_batch8": eight["ours"]["images_per_s"],
            "onnx_batch1": one["onnxruntime"]["images_per_s"]}


def in_process(model: str, body: bytes, threads: int | None, repeats: int = 5) -> float:
    """img/s of a server's own work on one request, without HTTP, queue or concurrency:
    decode the JPEG, ``Segmenter.predict_batch`` (label map and confidence at the image's
    size: the logits upsampled, the softmax), Hugging Face's segments (a PNG per class)."""
    if threads:
        torch.set_num_threads(threads)
    options = {"threads": threads} if threads and model.endswith(".onnx") else {}
    segmenter = open_segmenter(model, **options)

    def once() -> float:
        started = time.perf_counter()
        rgb = decode_checked(body, 1 << 40)
        ((labels, confidence),) = segmenter.predict_batch([rgb], confidence=True)
        render("segments", "application/json", segmenter, rgb, labels, confidence, {}, 0.5)
        return time.perf_counter() - started

    once()
    return 1 / float(np.median([once() for _ in range(repeats)]))


def table(rows: list[dict], alone: dict, machine: str, command: str) -> str:
    lines = [
        f"Measured with `{command}` on {machine}.",
        "",
        f"The model's forward pass alone (`bench`): PyTorch {alone['torch_batch1']:.2f} img/s at batch 1, "
        f"{alone['torch_batch8']:.2f} at batch 8; onnxruntime {alone['onnx_batch1']:.2f} at batch 1. A request's "
        f"whole work in one process, without HTTP (decode, `Segmenter`, segments): PyTorch "
        f"{alone['torch_in_process']:.2f} img/s, onnxruntime {alone['onnx_in_process']:.2f}.",
        "",
        "| server | clients | img/s | vs in-process | vs bench | p50 ms | p95 ms | p99 ms | errors | mean batch "
        "| batch ms | RSS MiB, 1st / 2nd half | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        backend = "onnx" if row["server"] == "onnx" else "torch"
        throughput = row["throughput"]
        cells = [row["server"], row["clients"], f"{throughput:.2f}",
                 f"{throughput / alone[f'{backend}_in_process']:.2f}x", f"{throughput / alone[f'{backend}_batch1']:.2f}x",
                 *(f"{row[k]:.0f}" if row[k] is not None else "-" for k in ("p50_ms", "p95_ms", "p99_ms")),
                 row["errors"], "-" if row["mean_batch"] is None else f"{row['mean_batch']:.1f}",
                 "-" if row["batch_ms"] is None else f"{row['batch_ms']:.0f}",
                 f"{row['rss_first_half_kib'] / 1024:.0f} / {row['rss_second_half_kib'] / 1024:.0f}",
                 f"{row['peak_kib'] / 1024:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="segformer_b0", help="registered model (random weights)")
    p.add_argument("--size", type=int, default=512, help="square image side (default 512)")
    p.add_argument("--clients", default="1,4,16,64", help="concurrent clients per point (default 1,4,16,64)")
    p.add_argument("--seconds", type=float, default=30, help="seconds per point (default 30)")
    p.add_argument("--servers", default=",".join(SERVERS), help=f"which of {', '.join(SERVERS)}")
    p.add_argument("--output", default="segments", help="?output= of the requests (default: Hugging Face's segments)")
    p.add_argument("--threads", type=int, help="torch threads of bench and of the servers (OMP_NUM_THREADS; "
                   "default: theirs)")
    p.add_argument("--litserve-path", metavar="DIR", help="a directory to put on PYTHONPATH for litserve "
                   "(e.g. pip install --target DIR litserve)")
    p.add_argument("--machine", default=f"{os.cpu_count()} CPU cores", help="the machine, for the table's caption")
    p.add_argument("--out", type=Path, default=Path("outputs/serve-load"))
    args = p.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    servers = args.servers.split(",")
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown:
        p.error(f"unknown --servers {', '.join(unknown)}; choose from {', '.join(SERVERS)}")
    if "litserve" in servers and args.litserve_path is None:
        args.litserve_path = ""  # litserve importable as installed
    body = photo(args.size)
    path = f"/?output={args.output}"

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        # one draw of random weights for every server (each process would draw its own), and its export
        model_dir, onnx_file = str(Path(scratch) / args.model), str(Path(scratch) / f"{args.model}.onnx")
        model = create_model(args.model).eval()
        model.save_pretrained(model_dir)
        export_onnx(model, onnx_file, check=False)
        print(f"timing {args.model} alone at {args.size}x{args.size} (bench, in-process)...", flush=True)
        alone = model_alone(args.model, args.size, args.threads)
        alone["torch_in_process"] = in_process(model_dir, body, args.threads)
        alone["onnx_in_process"] = in_process(onnx_file, body, args.threads)
        print(json.dumps(alone), flush=True)
        if args.threads:  # the servers' torch reads it
            os.environ["OMP_NUM_THREADS"] = str(args.threads)
        for name in servers:
            served = onnx_file if name == "onnx" else model_dir
            litserve = args.litserve_path if name == "litserve" else None
            server = Server(served, SERVERS[name], Path(scratch) / f"{name}.log", litserve)
            target, payload, content_type = (
                ("/predict", json.dumps({"inputs": base64.b64encode(body).decode()}).encode(), "application/json")
                if litserve is not None else (path, body, "image/jpeg"))
            try:
                pid = server.process.pid
                load(server.port, pid, payload, 1, 3, target, content_type)  # warm up (first JPEG, first batch)
                for count in clients:
                    before = batches(server.port, litserve is None)
                    row = {"server": name, **load(server.port, pid, payload, count, args.seconds, target, content_type)}
                    after = batches(server.port, litserve is None)
                    count_ = after[0] - before[0]
                    row["mean_batch"] = (after[1] - before[1]) / count_ if count_ else None
                    row["batch_ms"] = 1000 * (after[2] - before[2]) / count_ if count_ else None
                    row["peak_kib"] = memory_kib(pid)["VmHWM"]
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                server.stop()
    command = "python benchmarks/serve_load.py " + " ".join(sys.argv[1:])
    markdown = table(rows, alone, args.machine, command.strip())
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "serve_load.md", lambda target: Path(target).write_text(markdown))
    write_json(args.out / "serve_load.json", {"model_alone": alone, "rows": rows})
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
