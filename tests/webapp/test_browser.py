"""The on-device page in a real browser (Debian's Chromium through Playwright) against a real
`darkroom run` with no platform configured: the photo is styled in the page like the server
styles it, and no request the page makes leaves the origin or carries a picture."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

from inference import StyleRequest
from tests.conftest import TOKEN, portrait_path
from tests.webapp.driving import Recorder, open_page, style_photo
from tests.webapp.initdata import signed_init_data

# Skipped only on request; in CI a missing browser is a failure, not a silent skip.
pytestmark = pytest.mark.skipif(os.environ.get("DARKROOM_SKIP_BROWSER") == "1", reason="DARKROOM_SKIP_BROWSER=1")


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _assert_same_faces(result: dict, faces) -> None:
    """The page found the server's faces (BlazeFace in onnxruntime-web and in onnxruntime)."""
    expected = [{"x": f.x, "y": f.y, "width": f.width, "height": f.height} for f in faces]
    assert expected and json.loads(result["data"]["faces"]) == expected


def _assert_private(recorder: Recorder, origin: str, photo: bytes, allow_send: bool = False) -> None:
    assert recorder.requests, "no requests recorded"
    for request in recorder.requests:
        url = request.url
        assert url.startswith(origin) or url.startswith(f"blob:{origin}") or url.startswith("data:"), url
        body = request.post_data_buffer
        if request.method != "GET" or body:
            assert allow_send and request.method == "POST" and url == origin + "/app/send", (request.method, url)
            assert body is not None, "a request body that cannot be inspected"
            assert photo[:2048] not in body, "the original photo was uploaded"
            assert b"AI-styled image" in body  # only the labelled, styled result


def test_page_styles_like_the_server_and_nothing_leaves_the_device(page, darkroom_page, engine, tmp_path):
    origin = darkroom_page.split("/app/")[0]
    response = open_page(page, darkroom_page)
    headers = response.headers
    assert "script-src 'self' 'wasm-unsafe-eval'" in headers["content-security-policy"]
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"
    assert page.evaluate("crossOriginIsolated") is True
    assert page.evaluate("document.body.dataset.state") == "ready"
    assert int(page.evaluate("document.body.dataset.threads")) >= 1

    # a phone photo: stored sideways with EXIF orientation 6 and camera/GPS metadata
    upright = np.asarray(Image.open(portrait_path("grace")).convert("RGB"))
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))
    exif = stored.getexif()
    exif[0x0112] = 6
    exif[0x010F] = "SecretCameraMaker"
    exif.get_ifd(0x8825)[2] = (52.0, 31.0, 12.0)  # GPS latitude
    photo = tmp_path / "phone.jpg"
    stored.save(photo, "JPEG", quality=95, exif=exif)
    data = photo.read_bytes()

    result = style_photo(page, photo, "ink")
    picture = engine.load(data)
    expected = engine.render_rgb(picture, StyleRequest("ink"))
    assert result["pixels"].shape == expected.shape == upright.shape  # turned upright
    psnr = _psnr(result["pixels"], expected)
    print(f"page vs engine, ink, EXIF-rotated phone photo: PSNR {psnr:.1f} dB")
    assert psnr >= 40, f"PSNR {psnr:.1f} dB against the engine"
    _assert_same_faces(result, picture.faces)

    saved = result["saved"]
    assert saved[:3] == b"\xff\xd8\xff"
    assert b"Iptc4xmpExt:DigitalSourceType" in saved and b"AI-styled image (Ink wash)" in saved
    assert b"Exif" not in saved and b"SecretCameraMaker" not in saved
    _assert_private(page.recorder, origin, data)

    # strength and keep colours too
    result = style_photo(page, Path(portrait_path("grace")), "mosaic", strength=60, keep=True)
    original = Path(portrait_path("grace")).read_bytes()
    expected = engine.render_rgb(engine.load(original), StyleRequest("mosaic", 0.6, True))
    psnr = _psnr(result["pixels"], expected)
    print(f"page vs engine, mosaic 0.6 keep colours: PSNR {psnr:.1f} dB")
    assert psnr >= 40, f"PSNR {psnr:.1f} dB against the engine (strength, keep colours)"
    _assert_private(page.recorder, origin, original)

    shot = os.environ.get("DARKROOM_WEBAPP_SCREENSHOT") or str(tmp_path / "page.png")
    page.screenshot(path=shot, full_page=True)
    assert Path(shot).stat().st_size > 10_000


def test_telegram_launch_sends_only_the_styled_result(page, darkroom_page):
    origin = darkroom_page.split("/app/")[0]
    init_data = signed_init_data(TOKEN, 111111111, "zh-hans")
    open_page(page, darkroom_page + "#tgWebAppData=" + quote(init_data, safe="") + "&tgWebAppVersion=8.0&tgWebAppPlatform=android")
    assert page.evaluate("window.Telegram.WebApp.initData") == init_data
    assert "照片不会被发送" in page.text_content("#promise")  # the Telegram user's language
    original = Path(portrait_path("astronaut")).read_bytes()
    style_photo(page, Path(portrait_path("astronaut")), "watercolour")
    assert page.is_visible("#send") and "绝不上传原照片" in page.text_content("#send-note")
    page.recorder.clear()
    page.click("#send")
    deadline = time.time() + 20
    while not page.text_content("#send-status") and time.time() < deadline:
        time.sleep(0.1)
    while page.text_content("#send-status") == "正在发送……" and time.time() < deadline:
        time.sleep(0.1)
    # `darkroom run` without Telegram has no opt-in endpoint: the page says it was not sent
    assert page.text_content("#send-status") == "发送失败。你仍然可以保存图片。"
    assert page.is_enabled("#send")  # not sent, so it can be tried again
    [post] = [r for r in page.recorder.requests if r.method == "POST"]
    assert post.headers["x-telegram-init-data"] == init_data
    assert post.headers["content-type"] == "image/jpeg"
    _assert_private(page.recorder, origin, original, allow_send=True)


def test_without_wasm_simd_the_page_says_so_and_offers_the_chat(page, darkroom_page):
    page.add_init_script("WebAssembly.validate = () => false;")
    open_page(page, darkroom_page)
    assert page.evaluate("document.body.dataset.state") == "unsupported"
    assert "sending your photo to the bot" in page.text_content("#unsupported")
    assert not page.is_visible("#controls")


def test_without_cross_origin_isolation_it_still_works_on_one_thread(page, darkroom_page, engine):
    """Where the page cannot be isolated (an iframe in Telegram Web, a proxy dropping COOP/COEP)
    it falls back to one thread instead of failing."""

    def without_isolation(route):
        response = route.fetch()
        headers = {k: v for k, v in response.headers.items()
                   if k.lower() not in ("cross-origin-opener-policy", "cross-origin-embedder-policy")}
        route.fulfill(response=response, headers=headers)

    page.route("**/app/", without_isolation)
    open_page(page, darkroom_page)
    assert page.evaluate("crossOriginIsolated") is False
    assert page.evaluate("document.body.dataset.threads") == "1"
    result = style_photo(page, Path(portrait_path("astronaut")), "seaside")
    assert result["pixels"].shape == (512, 512, 3)
    _assert_same_faces(result, engine.load(Path(portrait_path("astronaut")).read_bytes()).faces)


@pytest.mark.parametrize("damage", ["sent bytes", "rebuilt file"])
def test_a_model_that_does_not_check_out_is_not_used(page, darkroom_page, damage):
    """The page checks the SHA-256 of the packed model that arrives, then of the ONNX file it
    rebuilds from it (bot/web/packing.py), before onnxruntime-web sees either."""

    def damaged_model(route):
        body = bytearray(route.fetch().body())
        body[len(body) // 2] ^= 1
        route.fulfill(status=200, body=bytes(body), headers={"Content-Type": "application/octet-stream"})

    def damaged_styles(route):
        document = route.fetch().json()
        document["models"]["face_full_range.onnx"]["graph_sha256"] = "0" * 64
        route.fulfill(json=document)

    if damage == "sent bytes":
        page.context.route("**/app/models/face_full_range.onnx*", damaged_model)
    else:
        page.context.route("**/app/styles.json", damaged_styles)
    try:
        open_page(page, darkroom_page)
        assert page.evaluate("document.body.dataset.state") == "error"
        assert "did not arrive intact" in page.text_content("#error")
    finally:
        page.context.unroute_all()
