"""A contact sheet: every style on one photo, labelled, to choose from."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .engine import Engine, Picture, StyleRequest

TILE = 360
LABEL = 30
PAD = 8


def contact_sheet(engine: Engine, data: bytes, columns: int = 4, language: str = "en") -> Image.Image:
    picture = engine.load(data)
    small = _thumbnail(picture.rgb, TILE)
    scale = small.shape[1] / picture.rgb.shape[1]
    faces = tuple(
        type(f)(round(f.x * scale), round(f.y * scale), round(f.width * scale), round(f.height * scale)) for f in picture.faces
    )
    thumb = Picture(small, faces)
    tiles = [("original", small)]
    for index, style in enumerate(engine.catalogue.styles, start=1):
        tiles.append((f"{index}. {style.display_name(language)} ({style.key})", engine.render_rgb(thumb, StyleRequest(style.key))))
    height, width = small.shape[:2]
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (width + PAD) + PAD, rows * (height + LABEL + PAD) + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=16)
    except Exception:
        font = ImageFont.load_default()
    for n, (label, rgb) in enumerate(tiles):
        row, column = divmod(n, columns)
        x, y = PAD + column * (width + PAD), PAD + row * (height + LABEL + PAD)
        sheet.paste(Image.fromarray(rgb), (x, y + LABEL))
        draw.text((x + 2, y + 6), label, fill="black", font=font)
    return sheet


def _thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    import cv2

    height, width = rgb.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale >= 1.0:
        return rgb
    size = (max(32, round(width * scale)), max(32, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
