"""The preview sheet: the person's own photo in every style, numbered, to choose from.

One square tile per style, cut around the face (the largest one) so that what a style does to a
face is what the tile shows, rendered by the same engine as a full result (same networks, same
face-aware blend) at tile size. Every tile has the same shape, so the network is compiled for it
once. The numbers are the picker's numbers (the catalogue's order): a person taps or types one.
The engine renders the tiles (`Engine.render_sheet`); this lays them out. Used by the chat
(handlers/photos.py, the preview sheet) and by `darkroom sheet`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .faces import Face
from .imageio import chinese_mark_font

TILE = 240  # pixels, square: small enough that 15 styles take about a second on 2 cores
COLUMNS = 4
PAD = 8
LABEL = 34  # the name strip under each tile
BADGE = 44  # the number's size: still legible when a phone shows the sheet 360 px wide
FOOTER = 48  # room for the visible AI mark (imageio.draw_mark), so it covers no tile or name
BACKGROUND = (24, 24, 27)


@dataclass(frozen=True)
class Tile:
    number: int  # 0: the original
    label: str
    rgb: np.ndarray


FACE_SHARE = 2.5  # the square is this many times the face's size: head and shoulders


def square_around_face(rgb: np.ndarray, faces: tuple[Face, ...]) -> tuple[int, int, int]:
    """A square of ``rgb`` centred, as far as the frame allows, on the largest face, about
    FACE_SHARE times its size (so a style's look on the face shows at tile size), never smaller
    than a tile; without a face, the largest square in the middle: (top, left, side)."""
    height, width = rgb.shape[:2]
    side = min(height, width)
    if faces:
        face = max(faces, key=lambda f: f.width * f.height)
        side = min(side, max(TILE, round(FACE_SHARE * max(face.width, face.height))))
        cy, cx = face.y + face.height / 2, face.x + face.width / 2
    else:
        cy, cx = height / 2, width / 2
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    return top, left, side


def tile_picture(rgb: np.ndarray, faces: tuple[Face, ...], tile: int = TILE) -> tuple[np.ndarray, tuple[Face, ...]]:
    """The square around the face, resized to ``tile`` px, and the faces in its coordinates."""
    import cv2

    top, left, side = square_around_face(rgb, faces)
    crop = rgb[top : top + side, left : left + side]
    small = cv2.resize(crop, (tile, tile), interpolation=cv2.INTER_AREA) if side != tile else crop.copy()
    scale = tile / side
    moved = tuple(
        Face(round((f.x - left) * scale), round((f.y - top) * scale), round(f.width * scale), round(f.height * scale), f.score)
        for f in faces
    )
    return small, moved


def compose(tiles: list[Tile], columns: int = COLUMNS, language: str = "en") -> np.ndarray:
    """The tiles in a grid, each with its number on it and its name under it."""
    side = tiles[0].rgb.shape[0]
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (side + PAD) + PAD, rows * (side + LABEL + PAD) + FOOTER), BACKGROUND)
    draw = ImageDraw.Draw(sheet, "RGBA")
    names = _font(22, language)
    numbers = _font(BADGE - 12, "en")
    for n, tile in enumerate(tiles):
        row, column = divmod(n, columns)
        x, y = PAD + column * (side + PAD), PAD + row * (side + LABEL + PAD)
        sheet.paste(Image.fromarray(np.ascontiguousarray(tile.rgb)), (x, y))
        if tile.number:
            text = str(tile.number)
            left, top, right, bottom = draw.textbbox((0, 0), text, font=numbers)
            width = max(BADGE, int(right - left) + 16)
            draw.rounded_rectangle((x + 6, y + 6, x + 6 + width, y + 6 + BADGE), radius=10, fill=(0, 0, 0, 170))
            draw.text((x + 6 + (width - (right - left)) / 2 - left, y + 6 + (BADGE - (bottom - top)) / 2 - top), text,
                      font=numbers, fill=(255, 255, 255, 255))
        if tile.label:
            draw.text((x + 2, y + side + 6), _fit(draw, tile.label, names, side - 4), font=names, fill=(235, 235, 240, 255))
    return np.array(sheet)  # a copy the caller may zero


def label_for(number: int, name: str) -> str:
    """A tile's caption: its number and name, where a font can draw the name (the Chinese names
    need a CJK font, as the visible AI mark does; without one the number is the label, and the
    picker's buttons and list carry the names)."""
    drawable = name.isascii() or bool(chinese_mark_font())
    text = name if drawable else ""
    if number == 0:
        return text
    return f"{number}  {text}".strip()


def _font(size: int, language: str) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = chinese_mark_font() if language == "zh" else ""
    if path:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow built without FreeType
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text``, cut with an ellipsis to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"
