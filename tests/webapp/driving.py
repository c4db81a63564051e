"""Driving the page in Chromium as a person would: open it, pick a photo, tap a style."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = os.environ.get("DARKROOM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}


class Recorder:
    """Every request the page and its workers make, with its body."""

    def __init__(self, context) -> None:
        self.requests: list = []
        self.context = context
        self._listener = lambda request: self.requests.append(request)
        context.on("request", self._listener)

    def stop(self) -> None:
        self.context.remove_listener("request", self._listener)

    def clear(self) -> None:
        self.requests.clear()


def open_page(page, url: str):
    response = page.goto(url)
    page.wait_for_selector("body:not([data-state=loading])", timeout=90_000)
    return response


def pick(page, photo: Path, wait_tiles: bool = True) -> None:
    """Pick a photo; wait until it is read (and, by default, shown in every style)."""
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector("body[data-photo=read], body[data-photo=refused]", timeout=120_000)
    if wait_tiles and page.evaluate("document.body.dataset.photo") == "read":
        page.wait_for_selector("body[data-tiles=done]", timeout=180_000)


def tap_style(page, style: str) -> None:
    tile = f".tile[data-style={style}]"
    page.wait_for_selector(f"{tile}:not([disabled])", timeout=180_000)
    if page.evaluate("matchMedia('(pointer: coarse)').matches"):
        page.tap(tile)
    else:
        page.click(tile)
    page.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=180_000)


def canvas_rgb(page, selector: str) -> np.ndarray:
    png = page.evaluate(f"document.querySelector({selector!r}).toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(png.split(",", 1)[1]))).convert("RGB"))


def style_photo(page, photo: Path, style: str, strength: int = 100, keep: bool = False) -> dict:
    """Pick ``photo``, set the options, tap ``style``; the result's pixels and the saved JPEG."""
    page.fill("#strength", str(strength))
    if keep:
        page.check("#keep")
    pick(page, photo, wait_tiles=False)
    tap_style(page, style)
    assert page.evaluate("document.body.dataset.state") == "done", page.text_content("#error")
    pixels = canvas_rgb(page, "#result")
    with page.expect_download() as download:  # the "Save" button, as a person would use it
        page.click("#save")
    saved = Path(download.value.path()).read_bytes()
    assert download.value.suggested_filename == f"darkroom-{style}.jpg"
    return {"pixels": pixels, "saved": saved, "data": page.evaluate("({...document.body.dataset})")}


def inside_viewport(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return bool(box) and box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= size["height"] + 0.5 \
        and box["x"] + box["width"] <= size["width"] + 0.5
