"""A tiny model, its ``Segmenter`` and servers of it (``serve_app``)."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from helpers import randomised
from servers import running, wait_ready

import segformer_lab as sl
from segformer_lab.serving import ServeOptions, create_app

CLASSES = ("sky", "road", "car")
STORED = sl.Preprocessing(size=(48, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A one-block segformer_b0 with three named classes, randomised so that its
    predictions vary over the image, that stores its preprocessing (a fixed 48x64 and its
    own normalisation): what the server must apply."""
    directory = tmp_path_factory.mktemp("served") / "model"
    config = sl.get_config("segformer_b0", num_classes=3, class_names=CLASSES).with_stages(depth=1)
    config = config.replace(preprocessing=STORED)
    randomised(sl.create_model(config=config), scale=0.05).eval().save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def segmenter(model_dir):
    return sl.Segmenter(model_dir)


@pytest.fixture(scope="module")
def serve_app(segmenter):
    """``serve_app(options=None, open_segmenter=None) -> base URL``: the module's
    segmenter (or ``open_segmenter``'s) served with ``options``; stopped with the module."""
    with ExitStack() as stack:

        def start(options: ServeOptions | None = None, open_segmenter=None) -> str:
            app = create_app(open_segmenter or (lambda: segmenter), options or ServeOptions(), source="test")
            url = stack.enter_context(running(app))
            if open_segmenter is None:
                wait_ready(url)
            return url

        yield start
