"""The page at ``GET /`` in a real browser: Debian's ``chromium`` driven by Playwright's
Python API (its own browser download is not used). It uploads images, and what the page
draws is checked against ``Segmenter``: the mask canvas pixel for pixel, the legend's
classes and shares, the hover text, the confidence toggle and the downloaded mask."""

from __future__ import annotations

import base64
import io
import shutil

import numpy as np
import pytest
from PIL import Image
from servers import picture

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("BROWSER TEST SKIPPED: no chromium on this machine (Debian: apt-get install chromium, "
                "which `make test` does as root)", allow_module_level=True)
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

MASK_PIXELS = """() => { const c = document.getElementById("mask");
  return Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data); }"""
DROPPED = """encoded => { const bytes = Uint8Array.from(atob(encoded), c => c.charCodeAt(0));
  const transfer = new DataTransfer(); transfer.items.add(new File([bytes], "room.jpg", {type: "image/jpeg"}));
  return transfer; }"""
LEGEND = """rows => rows.map(r => [Number(r.dataset.class), r.querySelector(".name").textContent.trim(),
  r.querySelector(".share").textContent])"""


@pytest.fixture(scope="module")
def browser_page():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser.new_page(viewport={"width": 1100, "height": 700})
        finally:
            browser.close()


def test_the_page_draws_what_the_segmenter_predicts(serve_app, segmenter, browser_page, tmp_path):
    url = serve_app()
    rgb, other = picture(96, 128, seed=5), picture(40, 50, seed=6)
    Image.fromarray(rgb).save(tmp_path / "street.png")
    Image.fromarray(other).save(tmp_path / "room.jpg")
    (tmp_path / "notes.png").write_bytes(b"not an image")
    labels, confidence = segmenter.predict(rgb, confidence=True)
    assert len(np.unique(labels)) > 1

    page = browser_page
    page.goto(url)
    page.wait_for_selector("#status.ready")
    assert "segformer_b0" in page.inner_text("#model")
    page.set_input_files("#file", [str(tmp_path / "street.png"), str(tmp_path / "notes.png")])
    page.wait_for_selector('#stage[data-ready="true"]')

    # the mask canvas: the model's colour at every pixel
    drawn = np.array(page.evaluate(MASK_PIXELS), np.uint8).reshape(96, 128, 4)
    palette = np.array(segmenter.palette, np.uint8)
    np.testing.assert_array_equal(drawn[..., :3], palette[labels])
    # the legend: the classes present, by share of the image
    counts = np.bincount(labels.ravel(), minlength=segmenter.num_classes)
    present = sorted(np.flatnonzero(counts), key=lambda k: -counts[k])
    expected = [[int(k), segmenter.class_names[k], f"{100 * counts[k] / labels.size:.1f}%"] for k in present]
    assert page.eval_on_selector_all("#legend tr", LEGEND) == expected
    # hovering a pixel names its class and confidence
    box = page.locator("#photo").bounding_box()
    y, x = 70, 100
    page.mouse.move(box["x"] + (x + 0.5) * box["width"] / 128, box["y"] + (y + 0.5) * box["height"] / 96)
    hover = page.inner_text("#hover")
    assert hover.startswith(segmenter.class_names[labels[y, x]])
    assert f"{round(100 * round(confidence[y, x] * 255) / 255)}% confident" in hover and f"({x}, {y})" in hover
    # opacity, the confidence map, the mask download
    page.locator("#opacity").fill("0.2")
    assert page.eval_on_selector("#mask", "c => c.style.opacity") == "0.2"
    page.check("#show-confidence")
    assert page.is_visible("#confidence") and not page.is_visible("#mask")
    page.uncheck("#show-confidence")
    href = page.get_attribute("#download", "href")
    assert page.get_attribute("#download", "download") == "street_labels.png"
    downloaded = Image.open(io.BytesIO(base64.b64decode(href.removeprefix("data:image/png;base64,"))))
    np.testing.assert_array_equal(np.asarray(downloaded), labels)

    # a refusal is told as the server's one line; an image dropped on the page joins the list
    buttons = page.locator("#images button")
    page.wait_for_selector("#images button.failed")
    buttons.nth(1).click()
    assert "not an image" in page.inner_text("#message.error")
    dropped = page.evaluate_handle(DROPPED, base64.b64encode((tmp_path / "room.jpg").read_bytes()).decode())
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
    page.wait_for_function("document.getElementById('message').textContent.includes('room.jpg: 50\u00d740')")
    assert buttons.count() == 3
