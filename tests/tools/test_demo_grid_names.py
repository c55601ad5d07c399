"""The demo's prediction grid names the classes as the models do (issue 13, item 1): the
legend takes the names and colours the trained models carry, and the dataset's only for
models that carry none."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import segformer_lab as sl
from segformer_lab.tools.demo import plots

pytest.importorskip("matplotlib")


class FakeSet:
    """One validation sample, as the demo's evaluation set gives it."""

    samples = [0]

    def load(self, ref):
        return {"image": np.zeros((32, 32, 3), np.uint8), "mask": np.zeros((32, 32), np.uint8), "path": "x.png"}

    def __getitem__(self, index):
        return {"pixel_values": torch.zeros(3, 32, 32), "labels": torch.zeros(32, 32, dtype=torch.long)}


def legend_of(grid, summary, tmp_path, monkeypatch) -> list[tuple[str, tuple]]:
    seen = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path, rect=None: seen.append(fig) or path)
    plots.prediction_grid(grid, summary, tmp_path / "grid.png")
    legend = seen[0].legends[0]
    return [(t.get_text(), tuple(round(255 * c) for c in h.get_facecolor()[:3]))
            for t, h in zip(legend.get_texts(), legend.legend_handles)]


def test_grid_legend_uses_the_models_names(tmp_path, monkeypatch):
    config = sl.get_config("segformer_b0", num_classes=2, class_names=["wall", "sky"],
                           palette=[[10, 20, 30], [40, 50, 60]]).with_stages(depth=1)
    named = {"b0": sl.create_model(config=config).eval()}
    summary = SimpleNamespace(models=["b0"], classes=["class_0", "class_1"], palette=[(1, 1, 1), (2, 2, 2)])
    grid = plots.predictions(named, FakeSet(), [0], 32, "cpu")
    assert legend_of(grid, summary, tmp_path, monkeypatch) == [
        ("wall", (10, 20, 30)), ("sky", (40, 50, 60)), ("unlabelled", (0, 0, 0))]
    unnamed = {"b0": sl.create_model(config=config.replace(class_names=None, palette=None)).eval()}
    grid = plots.predictions(unnamed, FakeSet(), [0], 32, "cpu")
    assert [name for name, _ in legend_of(grid, summary, tmp_path, monkeypatch)] == ["class_0", "class_1", "unlabelled"]
