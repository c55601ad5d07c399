import os

import pytest
import torch
from helpers import EXPORTED_CLASSES, EXPORTED_PALETTE, randomised
from helpers import shallow as shallow_config

import segformer_lab as sl
from segformer_lab.export import OnnxRunner, export_onnx


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """``make test`` spreads the tests over its workers one by one (``--dist loadgroup``),
    except those that share a module-scoped fixture (a trained run, a served model): one
    group per module, run in one worker, so that the fixture is built once."""
    for item in items:
        if any(defs[-1].scope == "module" for defs in item._fixtureinfo.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_worker():
    """``make test`` runs the suite in two pytest-xdist workers on a two-core machine: each
    takes one torch thread, so that the two do not fight over the cores."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    torch.manual_seed(0)


@pytest.fixture
def shallow():
    """``shallow(config)``: ``helpers.shallow``, one block per stage."""
    return shallow_config


@pytest.fixture
def onnx_matches(tmp_path):
    """``check(model)``: export with dynamic batch/height/width at 64x96, run the file in
    onnxruntime at 97x130 and compare with eager PyTorch (max abs 1e-4)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")

    def check(model: torch.nn.Module, run_size=(97, 130)) -> None:
        model = model.eval()
        dims = {0: torch.export.Dim("batch", max=64), 2: torch.export.Dim("height", min=64, max=4096),
                3: torch.export.Dim("width", min=64, max=4096)}
        program = torch.onnx.export(model, (torch.randn(2, 3, 64, 96),), dynamic_shapes={"pixel_values": dims},
                                    dynamo=True, verbose=False)
        path = tmp_path / "model.onnx"
        program.save(str(path))
        x = torch.randn(1, 3, *run_size)
        with torch.no_grad():
            torch.testing.assert_close(OnnxRunner(path)(x), model(x), atol=1e-4, rtol=1e-4)

    return check


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    the test machine's cores are shared, and more threads only spin. Module-scoped, so
    module fixtures that train (demo runs, finished runs) get it too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)



@pytest.fixture(scope="session")
def exported_b0(tmp_path_factory):
    """``(checkpoint_dir, file.onnx)``: a shallow, randomised 3-class segformer_b0 whose
    config names its classes ``EXPORTED_CLASSES`` and colours them ``EXPORTED_PALETTE``,
    saved as a checkpoint and exported once per session (dynamic axes, float32, opset 18)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    directory = tmp_path_factory.mktemp("exported_b0")
    config = sl.get_config("segformer_b0", num_classes=3, class_names=EXPORTED_CLASSES, palette=EXPORTED_PALETTE)
    model = randomised(sl.create_model(config=config.with_stages(depth=1)))
    model.eval().save_pretrained(directory / "checkpoint")
    export_onnx(model, directory / "b0.onnx", check=False)
    return directory / "checkpoint", directory / "b0.onnx"
