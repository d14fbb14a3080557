"""The edge's page in a real browser (Debian's Chromium driven by Playwright) against real servers with TLS."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from pmc2.runtime.cifar10 import CLASSES, load_evaluation
from pmc2.runtime.paths import REPORTS
from pmc2.serving.local_stack import local_stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags this machine's closed network needs (no background connections, no first-run work).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPORTS / "ui" / "edge_page.png"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Chromium is not installed (make test installs it; as root: apt-get install -y chromium)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    with local_stack(tmp_path_factory.mktemp("ui-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1000, "height": 820})
    yield context.new_page()
    context.close()


def a_photo(path: Path) -> Path:
    """A real photograph (a CIFAR-10 evaluation image) as a phone would hold it: larger, as a JPEG file."""
    buffer = io.BytesIO()
    Image.fromarray(load_evaluation(None).images[7]).resize((240, 240), Image.Resampling.BICUBIC).save(
        buffer, format="JPEG", quality=92)
    path.write_bytes(buffer.getvalue())
    return path


def test_a_photo_shows_what_leaves_the_trusted_domain(stack, page, tmp_path: Path) -> None:
    page.goto(f"{stack.edge_url}/ui#token={stack.token}")
    page.wait_for_selector("#codec option", state="attached")
    page.select_option("#codec", "neural")
    page.set_input_files("#file", str(a_photo(tmp_path / "photo.jpg")))
    page.wait_for_selector("#result:not([hidden])", timeout=30_000)
    verdict = page.inner_text("#verdict")
    assert verdict.startswith("The cloud says: ") and any(name in verdict for name in CLASSES)
    for name in ("received", "perturbed", "decoded"):
        assert page.get_attribute(f"#{name}", "src").startswith("data:image/png;base64,")
        assert page.evaluate(f"document.getElementById('{name}').naturalWidth") == 32
    assert "bytes over the neural link" in page.inner_text("#cloud-saw")
    assert page.locator("#bar div").count() >= 6
    page.screenshot(path=str(tmp_path / "edge_page.png"), full_page=True)
    if os.environ.get("PMC2_UPDATE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "edge_page.png", SCREENSHOT)


def test_a_file_that_is_not_an_image_is_explained_in_words(stack, page, tmp_path: Path) -> None:
    page.goto(f"{stack.edge_url}/ui#token={stack.token}")
    page.wait_for_selector("#codec option", state="attached")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture at all")
    page.set_input_files("#file", str(notes))
    page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
    assert "Not an image" in page.inner_text("#error")
    assert page.get_attribute("#result", "hidden") is not None


def test_a_wrong_token_is_explained_in_words(stack, page, tmp_path: Path) -> None:
    page.goto(f"{stack.edge_url}/ui#token=not-the-token")
    page.wait_for_selector("#samples img")
    page.click("#samples img >> nth=0")  # a bundled sample
    page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
    assert "Wrong or missing token" in page.inner_text("#error")
