"""The page as a person uses it, on a phone (390x844, touch) and a desktop (1280x800), in real
Chromium against a real `darkroom run`: the photo first, shown at once; the photo small in every
style; a tap styles it where the person is looking; another tap restyles it; hold to compare;
Cancel; every refusal next to the picker, with the old result cleared."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from tests.conftest import TOKEN, portrait_path
from tests.webapp.conftest import page_in
from tests.webapp.driving import DESKTOP, PHONE, canvas_rgb, inside_viewport, open_page, pick, tap_style
from tests.webapp.initdata import signed_init_data

pytestmark = pytest.mark.skipif(os.environ.get("DARKROOM_SKIP_BROWSER") == "1", reason="DARKROOM_SKIP_BROWSER=1")
SCREENSHOTS = os.environ.get("DARKROOM_SCREENSHOTS")  # a folder: keep the screenshots (docs/ uses them)


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = Path(SCREENSHOTS or tmp_path) / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000
    return path


@pytest.fixture(params=["phone", "desktop"])
def sized(request, chromium):
    options = PHONE if request.param == "phone" else DESKTOP
    context = chromium.new_context(**options)
    page = page_in(context)
    page.size_name = request.param
    yield page
    context.close()
    assert not page.errors, page.errors


def _photo_1280(tmp_path: Path) -> Path:
    """The portrait at 1280x960, the working size a phone photo is brought to."""
    rgb = Image.open(portrait_path("astronaut")).convert("RGB").resize((960, 960)).crop((0, 0, 960, 720)).resize((1280, 960))
    path = tmp_path / "photo1280.jpg"
    rgb.save(path, "JPEG", quality=92)
    return path


def test_the_photo_leads_and_a_tap_styles_it_in_view(sized, darkroom_page, tmp_path):
    page = sized
    open_page(page, darkroom_page)
    # the picker is the first and largest control
    picker = page.locator("#pick").bounding_box()
    assert picker["height"] >= 200 and inside_viewport(page, "#pick")
    assert "on this device" in page.text_content("#promise") and "phone" not in page.text_content("main").lower()
    licences = page.text_content("#licences")
    assert licences and page.text_content("body").count(licences) == 1  # the licence once, under "What happens…"

    photo = Path(portrait_path("astronaut"))
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector("#preview[src^='blob:']", state="visible", timeout=5_000)
    assert inside_viewport(page, "#preview")
    pick_seconds = float(page.wait_for_function("() => document.body.dataset.previewSeconds").json_value())
    print(f"{page.size_name}: pick -> preview {pick_seconds:.3f} s")
    page.wait_for_selector("body[data-tiles=done]", timeout=180_000)
    assert page.text_content("#faces-line") == "1 face found, styled more gently."
    _shot(page, tmp_path, f"page-{page.size_name}-picked")

    # every tile drawn, none blank, all different from each other
    keys = page.eval_on_selector_all(".tile", "tiles => tiles.map(t => t.dataset.style)")
    assert len(keys) == 12
    tiles = [canvas_rgb(page, f".tile[data-style={k}] canvas").astype(np.float32) for k in keys]
    for key, tile in zip(keys, tiles, strict=True):
        assert tile.shape[:2] in ((160, 160),) and tile.std() > 10, f"tile {key} is blank"
    for i in range(len(tiles)):
        for j in range(i + 1, len(tiles)):
            assert np.abs(tiles[i] - tiles[j]).mean() > 2, f"tiles {keys[i]} and {keys[j]} look the same"

    # a tap puts the whole result where the person is looking, with the actions at hand
    page.recorder.clear()
    tap_style(page, "ink")
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#error")
    assert inside_viewport(page, "#result") and page.is_hidden("#preview")
    for control in ("#save", "#compare"):
        assert inside_viewport(page, control), control
    ink = canvas_rgb(page, "#result")
    assert page.text_content("#badge") == "Ink wash"
    assert not [r for r in page.recorder.requests if r.method != "GET"]  # tapping loaded nothing, sent nothing
    _shot(page, tmp_path, f"page-{page.size_name}-styled")

    # another tap restyles at once, without picking again
    tap_style(page, "mosaic")
    mosaic = canvas_rgb(page, "#result")
    assert mosaic.shape == ink.shape and np.abs(mosaic.astype(int) - ink.astype(int)).mean() > 10
    assert page.get_attribute(".tile[data-style=mosaic]", "aria-pressed") == "true"

    # before/after: the original while held
    page.dispatch_event("#compare", "pointerdown", {"button": 0})
    assert page.is_visible("#preview") and page.is_hidden("#result") and page.text_content("#badge") == "Original"
    page.dispatch_event("#compare", "pointerup")
    assert page.is_hidden("#preview") and page.is_visible("#result")

    # every control a finger can reach is at least 44 px each way
    small = page.evaluate("""() => [...document.querySelectorAll('button, a, summary, .chip, .tile, input[type=range]')]
        .filter(e => e.offsetParent !== null || getComputedStyle(e).position === 'fixed')
        .map(e => [e.id || e.className, e.getBoundingClientRect()])
        .filter(([, r]) => r.width > 0 && (r.width < 44 || r.height < 44)).map(([n]) => n)""")
    assert not small, small


def test_cancel_stops_the_styling_and_keeps_the_photo(page, darkroom_page, tmp_path):
    open_page(page, darkroom_page)
    pick(page, _photo_1280(tmp_path))
    page.click(".tile[data-style=ink]")
    page.wait_for_selector("#cancel", state="visible", timeout=10_000)
    assert page.text_content("#step").startswith("Step 3 of 4")
    page.click("#cancel")
    assert page.evaluate("document.body.dataset.state") == "ready"
    assert page.is_hidden("#progress-box") and page.is_hidden("#result") and page.is_visible("#preview")
    assert "Stopped" in page.text_content("#error")
    time.sleep(1)  # the cancelled run finishing in the worker does not show up later
    assert page.is_hidden("#result") and page.evaluate("document.body.dataset.state") == "ready"
    tap_style(page, "ink")  # and the photo is still there to style
    assert page.evaluate("document.body.dataset.state") == "done"


def test_a_bad_file_is_refused_at_once_next_to_the_picker_and_clears_the_old_result(page, darkroom_page, tmp_path):
    open_page(page, darkroom_page)
    pick(page, Path(portrait_path("grace")), wait_tiles=False)
    tap_style(page, "ink")
    assert page.is_visible("#bar")

    not_a_picture = tmp_path / "notes.jpg"
    not_a_picture.write_text("not a picture at all")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (20, 20), "red").save(tiny)
    huge = tmp_path / "huge.png"  # 10000 x 10000: refused from its header, never decoded
    Image.new("L", (10000, 10000)).save(huge, optimize=False)
    cases = [
        (not_a_picture, "That file could not be read as a picture. Please try a JPEG, PNG or WebP photo."),
        (tiny, "That picture is too small to style. Please try a larger one."),
        (huge, "That picture is over 50 megapixels, more than this page can safely hold. Please choose a smaller one."),
    ]
    for path, message in cases:
        page.set_input_files("#photo", str(path))
        started = time.monotonic()
        page.wait_for_function("t => document.getElementById('error').textContent === t", arg=message, timeout=10_000)
        assert time.monotonic() - started < 2  # at once, not after a "Style it"
        # right under the picker, where the person is looking, and the old result is gone
        error, stage = page.locator("#error").bounding_box(), page.locator("#stage").bounding_box()
        assert 0 <= error["y"] - (stage["y"] + stage["height"]) < 40 and inside_viewport(page, "#error")
        assert page.is_hidden("#bar") and page.is_hidden("#result") and page.is_visible("#pick")
        assert not page.eval_on_selector_all(".tile", "ts => ts.filter(t => !t.disabled).length")
    # a good photo after a refusal works and clears the message
    pick(page, Path(portrait_path("astronaut")), wait_tiles=False)
    assert page.is_hidden("#error") and page.is_visible("#preview")


def test_the_face_switch_says_what_it_does(page, darkroom_page):
    open_page(page, darkroom_page)
    pick(page, Path(portrait_path("grace")), wait_tiles=False)
    assert page.text_content("#faces-line") == "1 face found, styled more gently."
    tap_style(page, "ink")
    gentle = canvas_rgb(page, "#result")
    results = page.evaluate("document.body.dataset.results")
    page.uncheck("#gentle")
    assert page.text_content("#faces-line") == "Faces are styled like the rest of the photo."
    page.wait_for_function("n => document.body.dataset.results !== n", arg=results, timeout=120_000)
    plain = canvas_rgb(page, "#result")
    assert np.abs(plain.astype(int) - gentle.astype(int)).mean() > 0.5  # the face is styled fully now


@pytest.mark.parametrize(("status", "text"), [
    (409, "Not sent: agree in the chat first (/start), then send again."),
    (403, "Not sent: this page was opened too long ago. Reopen this page from the chat, then send again."),
    (200, "Sent to the chat."),
])
def test_the_opt_in_send_says_what_to_do(page, darkroom_page, status, text):
    page.route("**/app/send", lambda route: route.fulfill(status=status, body="{}", content_type="application/json"))
    init_data = signed_init_data(TOKEN, 111111111, "en")
    open_page(page, darkroom_page + "#tgWebAppData=" + quote(init_data, safe="") + "&tgWebAppVersion=8.0&tgWebAppPlatform=android")
    pick(page, Path(portrait_path("grace")), wait_tiles=False)
    tap_style(page, "ink")
    page.click("#send")
    page.wait_for_function("t => document.getElementById('send-status').textContent === t", arg=text, timeout=20_000)
    assert page.is_disabled("#send") is (status == 200)  # sent once, not again
    evidence = page.text_content("#evidence")
    assert evidence.startswith("Your photo: 0 bytes sent.")
    assert ("KB" in evidence) is (status == 200)


@pytest.mark.parametrize(("scheme", "language"), [("dark", "zh-CN"), ("light", "zh-CN"), ("dark", "en-US")])
def test_screenshots_in_both_schemes_and_languages(chromium, darkroom_page, tmp_path, scheme, language):
    for name, options in (("phone", PHONE), ("desktop", DESKTOP)):
        context = chromium.new_context(**options, color_scheme=scheme, locale=language)
        page = page_in(context)
        try:
            open_page(page, darkroom_page)
            pick(page, Path(portrait_path("astronaut")))
            tap_style(page, "watercolour")
            assert page.evaluate("document.body.dataset.state") == "done"
            if language.startswith("zh"):
                assert "这台设备" in page.text_content("#promise")
            _shot(page, tmp_path, f"page-{name}-{scheme}-{language[:2]}")
            assert not page.errors, page.errors
        finally:
            context.close()


def test_it_reloads_and_styles_offline_after_the_first_visit_and_can_be_installed(chromium, darkroom_page):
    context = chromium.new_context(**PHONE)
    page = page_in(context)
    try:
        open_page(page, darkroom_page)
        installed = "Promise.race([navigator.serviceWorker.ready.then(() => true), new Promise(r => setTimeout(() => r(false), 60000))])"
        assert page.evaluate(installed)  # installed: the page, runtime and models are kept
        manifest = page.evaluate("fetch('manifest.webmanifest').then(r => r.json())")
        assert manifest["display"] == "standalone" and manifest["icons"] and manifest["start_url"] == "./"
        # the scripts carry Subresource Integrity, and About lists what runs, by SHA-256
        assert page.get_attribute("script[src='app.js']", "integrity").startswith("sha384-")
        assert page.get_attribute("link[href='app.css']", "integrity").startswith("sha384-")
        hashes = page.text_content("#hashes")
        for name in ("index.html", "app.js", "worker.js", "vendor/ort-wasm-simd-threaded.wasm", "models/multistyle26-phase.onnx"):
            assert f"{name}: " in hashes, name
        context.set_offline(True)
        page.reload()
        page.wait_for_selector("body:not([data-state=loading])", timeout=90_000)
        assert page.evaluate("document.body.dataset.state") == "ready", page.text_content("#error")
        pick(page, Path(portrait_path("astronaut")), wait_tiles=False)
        tap_style(page, "ink")
        assert page.evaluate("document.body.dataset.state") == "done"
        assert not page.errors, page.errors
    finally:
        context.set_offline(False)
        context.close()


AXE = Path(__file__).resolve().parents[2] / ".node" / "node_modules" / "axe-core" / "axe.min.js"


@pytest.mark.parametrize("options", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_an_accessibility_scan_finds_nothing_serious(chromium, darkroom_page, options):
    """axe-core (npm axe-core@4.10.3 in .node/, installed by .ci/run) on the page as loaded,
    after a photo is picked and after it is styled: no serious or critical violation."""
    assert AXE.exists(), "npm install --prefix .node --no-save axe-core@4.10.3 (see .ci/run)"
    context = chromium.new_context(**options, bypass_csp=True)  # axe is injected as a script
    page = page_in(context)
    try:
        open_page(page, darkroom_page)
        page.evaluate(AXE.read_text())
        scan = "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.filter(v => ['serious', 'critical'].includes(v.impact)).map(v => [v.id, v.nodes.map(n => n.target.join(' '))]))"
        found = {"loaded": page.evaluate(scan)}
        pick(page, Path(portrait_path("astronaut")))
        found["picked"] = page.evaluate(scan)
        tap_style(page, "ink")
        found["styled"] = page.evaluate(scan)
        assert not any(found.values()), found
    finally:
        context.close()
