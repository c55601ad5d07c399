"""The load test's LitServe contender (``serve_load.py --servers litserve``): the same
model and answer (Hugging Face's segments) behind LitServe instead of
``segformer-lab serve``'s FastAPI app and batcher, to compare the two.

    python benchmarks/litserve_app.py MODEL PORT [MAX_BATCH] [BATCH_WAIT_MS]

LitServe decodes request bodies as JSON (or forms), so this one takes Hugging Face's JSON
form only, ``{"inputs": "<base64 image>"}``, at ``POST /predict`` (raw image bytes, the
form ``InferenceClient`` sends without parameters, would need a middleware). litserve is
not a project dependency: install it where this runs (``pip install litserve``).
"""

from __future__ import annotations

import base64
import sys

import litserve as ls

from segformer_lab.inference import open_segmenter
from segformer_lab.serving.requests import decode_checked
from segformer_lab.serving.responses import segments

MAX_PIXELS = 4096 * 4096


class Segmentation(ls.LitAPI):
    def __init__(self, model: str, max_batch: int, wait_s: float):
        super().__init__(max_batch_size=max_batch, batch_timeout=wait_s, api_path="/predict")
        self.model = model

    def setup(self, device):
        self.segmenter = open_segmenter(self.model)

    def decode_request(self, request):
        return decode_checked(base64.b64decode(request["inputs"]), MAX_PIXELS)

    def batch(self, inputs):
        return inputs  # a list of images: predict_batch takes it as is

    def predict(self, rgbs):
        return self.segmenter.predict_batch(rgbs, confidence=True, batch_size=len(rgbs))

    def unbatch(self, output):
        return output

    def encode_response(self, output):
        labels, confidence = output
        return segments(self.segmenter, labels, confidence)


if __name__ == "__main__":
    model, port = sys.argv[1], int(sys.argv[2])
    max_batch = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    wait_ms = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    server = ls.LitServer(Segmentation(model, max_batch, wait_ms / 1000), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=port, generate_client_file=False)
