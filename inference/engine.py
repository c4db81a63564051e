"""The styling engine: bytes in, labelled JPEG bytes out, all in memory.

It knows nothing about chats. `Engine` is synchronous and thread-safe (CPU-bound work for a
worker thread); `AsyncEngine` runs it off the event loop with bounded concurrency, and
cancelling the awaiting task stops the work itself: queued work never starts, a running decode
is killed and a running onnxruntime session is terminated (see inference/cancel.py).
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from .backends import DEFAULT_MAX_SHAPES, BackendChoice, BackendPreference, KeptChoice
from .cancel import Cancellation, Cancelled, run_options
from .catalogue import Catalogue, Style, load_catalogue
from .errors import InferenceError, UnknownStyle
from .faces import MASK_BLUR, MASK_CENTRE_Y, MASK_HALF_HEIGHT, MASK_HALF_WIDTH, Face, FaceDetector, face_mask
from .faithful import FILTERS
from .imageio import SOURCE_FILTER, SOURCE_NEURAL, AILabel, DecodeLimits, DecodeServer, decode, encode_jpeg
from .models import SessionPool, machine_threads
from .networks import ArbitraryStyleNetwork, MultiStyleNetwork
from .provenance import ModelCredit, Signer, SigningIdentity
from .sheet import Tile, compose, label_for, tile_picture
from .version import __version__

PICTURE_STYLE = "picture"  # the style key of "any picture as style"
PICTURE_FACE_STRENGTH = 0.6

T = TypeVar("T")


@dataclass(frozen=True)
class EngineConfig:
    max_side: int = 1280
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    threads: int = 0  # 0: every core this process may use
    concurrency: int = 1  # images styled at once; each already uses `threads` cores
    jpeg_quality: int = 90
    visible_label: bool = False
    custom_styles: Path | None = None
    software: str = f"Darkroom {__version__}"
    backend: str = ""  # "", "onnxruntime" or "openvino": '' lets start-up time them and choose
    precision: str = ""  # "", "fp32" or "bf16" (bf16 only where the CPU reports it)
    compiled_shapes: int = DEFAULT_MAX_SHAPES  # per backend that compiles per shape (OpenVINO)
    provider: str = ""  # the service provider named in the GB 45438 label ('' names the software)
    signing: SigningIdentity | None = None  # signs every result with Content Credentials when set
    # Where the backend choice measured at start-up is kept for the next start (the data
    # directory's backend-choice.json); None: timed at every start.
    choice_file: Path | None = None

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels, max_side=self.max_side)


@dataclass(frozen=True)
class StyleRequest:
    style: str
    strength: float = 1.0
    keep_colours: bool = False
    face_aware: bool = True
    mark: bool = False  # draw the visible AI mark (where the platform's results carry one)

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError("strength must be between 0 and 1")


@dataclass(frozen=True)
class Picture:
    """A decoded input and the faces in it."""

    rgb: np.ndarray
    faces: tuple[Face, ...]

    @property
    def face_count(self) -> int:
        return len(self.faces)


@dataclass(frozen=True)
class StyledImage:
    jpeg: bytes
    width: int
    height: int
    style: str
    face_count: int
    seconds: float


class Engine:
    def __init__(self, config: EngineConfig = EngineConfig(), catalogue: Catalogue | None = None) -> None:
        self.config = config
        self.catalogue = catalogue or load_catalogue(config.custom_styles)
        self.sessions = SessionPool(config.threads or machine_threads())
        self.multistyle = MultiStyleNetwork(
            self.catalogue.model("multistyle26"),
            self.sessions,
            BackendPreference(config.backend, config.precision),
            max_shapes=config.compiled_shapes,
            # the start-up check covers every network style of the catalogue
            probe_styles=[s.weights for s in self.catalogue.styles if s.kind == "network"],
            kept=KeptChoice(config.choice_file) if config.choice_file is not None else None,
        )
        self.arbitrary = ArbitraryStyleNetwork(
            self.catalogue.model("arbitrary_predict"), self.catalogue.model("arbitrary_transform"), self.sessions
        )
        # One thread: the face networks are tiny (1-4 ms), and on this 2-core machine two threads
        # made them 2.5x slower while other work ran (bench/faces.py).
        self.faces = FaceDetector(self.catalogue.model("face_short_range"), self.catalogue.model("face_full_range"), SessionPool(1))
        self.signer = Signer(config.signing) if config.signing is not None else None
        DecodeServer.start()  # its interpreter starts while the models load

    def verify(self, sessions: bool = True) -> None:
        """Check every model file against its SHA-256 and build every session now, so a
        tampered or missing file stops start-up with a clear message instead of failing a
        person's photo later. ``sessions=False`` checks the files only: for a process that
        styles nothing itself (a front whose photos go to workers), no runtime is loaded."""
        for model in self.catalogue.models.values():
            model.read_verified()
        if not sessions:
            return
        self.multistyle.warm_up()
        self.arbitrary.warm_up()
        self.faces.warm_up()
        for style in self.catalogue.styles:
            if style.kind == "custom" and style.model is not None:  # a custom style is its own model
                self.sessions.session(style.model)

    @property
    def choice(self) -> BackendChoice | None:
        """Where the 26-style network runs (known after `verify` or the first network style)."""
        return self.multistyle.choice

    # -- steps ------------------------------------------------------------------------------

    def load(self, data: bytes | bytearray, detect_faces: bool = True, cancel: Cancellation | None = None) -> Picture:
        rgb = decode(data, self.config.limits, cancel)
        try:
            if cancel is not None:
                cancel.check()
            faces = tuple(self.faces.detect(rgb)) if detect_faces else ()
        except BaseException:
            rgb.fill(0)  # nobody else holds the picture yet
            raise
        return Picture(rgb=rgb, faces=faces)

    def style(self, name: str) -> Style:
        return self.catalogue.get(name)

    def render(
        self, picture: Picture, request: StyleRequest, style_picture: Picture | None = None, cancel: Cancellation | None = None
    ) -> StyledImage:
        """Style a loaded picture and encode it as a labelled JPEG."""
        started = time.perf_counter()
        out = self.render_rgb(picture, request, style_picture, cancel)
        if cancel is not None:
            cancel.check()
        jpeg = self.encode(out, request, picture.faces)
        height, width = out.shape[:2]
        return StyledImage(
            jpeg=jpeg,
            width=width,
            height=height,
            style=request.style,
            face_count=picture.face_count,
            seconds=time.perf_counter() - started,
        )

    def render_rgb(
        self, picture: Picture, request: StyleRequest, style_picture: Picture | None = None, cancel: Cancellation | None = None
    ) -> np.ndarray:
        """Style a loaded picture: HxWx3 uint8 out (the array before JPEG encoding)."""
        original = picture.rgb
        try:
            if request.style == PICTURE_STYLE:
                if style_picture is None:
                    raise InferenceError("the picture style needs a style picture")
                styled = self._picture_style(original, style_picture.rgb, request.strength, cancel)
                # strength already moved the style vector towards the photo's own style
                strength, face_strength = 1.0, PICTURE_FACE_STRENGTH
            else:
                style = self.catalogue.get(request.style)
                styled = self._apply(style, original, cancel)
                strength, face_strength = request.strength, style.face_strength
        except Exception:
            if cancel is not None and cancel.cancelled:  # onnxruntime's "terminate flag" failure
                raise Cancelled("styling was cancelled") from None
            raise
        if request.keep_colours:
            styled = keep_colours(styled, original)
        faces = list(picture.faces) if request.face_aware else []
        return blend(original, styled, strength, faces, face_strength)

    def encode(self, rgb: np.ndarray, request: StyleRequest, faces: tuple[Face, ...] = ()) -> bytes:
        """The result as a labelled JPEG (with the visible mark away from ``faces`` when asked),
        signed with Content Credentials when an identity is set."""
        label = self.label(request.style)
        mark = self.config.visible_label or request.mark
        jpeg = encode_jpeg(rgb, label, self.config.jpeg_quality, mark, tuple(_margin(f) for f in faces) if mark else ())
        if self.signer is None:
            return jpeg
        return self.signer.sign(jpeg, label, self.credits(request.style, bool(faces) and request.face_aware))

    def render_sheet(
        self, picture: Picture, language: str = "en", mark: bool = False, cancel: Cancellation | None = None
    ) -> StyledImage:
        """The preview sheet (inference/sheet.py): the square around ``picture``'s face, then that
        in every style of the catalogue, numbered as the picker numbers them, as one labelled JPEG."""
        started = time.perf_counter()
        small, faces = tile_picture(picture.rgb, picture.faces)
        thumb = Picture(small, faces)
        original = "原图" if language == "zh" else "Original"
        tiles = [Tile(0, label_for(0, original), small)]
        try:
            for number, style in enumerate(self.catalogue.styles, start=1):
                if cancel is not None:
                    cancel.check()
                rgb = self.render_rgb(thumb, StyleRequest(style.key), cancel=cancel)
                tiles.append(Tile(number, label_for(number, style.display_name(language)), rgb))
            sheet = compose(tiles, language=language)
            height, width = sheet.shape[:2]
            jpeg = self.encode_sheet(sheet, mark or self.config.visible_label)
            sheet.fill(0)
        finally:
            for tile in tiles:  # derived from the face: released as thoroughly as the input
                tile.rgb.fill(0)
        return StyledImage(jpeg, width, height, "sheet", picture.face_count, time.perf_counter() - started)

    def encode_sheet(self, rgb: np.ndarray, mark: bool = False) -> bytes:
        """A sheet of every style as a labelled, signed JPEG: its tiles are the catalogue's
        results, so it names every model behind them."""
        label = AILabel(SOURCE_NEURAL, "Preview sheet of every style", self.config.software, self.config.provider, uuid.uuid4().hex)
        jpeg = encode_jpeg(rgb, label, self.config.jpeg_quality, mark)
        if self.signer is None:
            return jpeg
        credits = tuple(ModelCredit(m.key, m.licence) for m in self.catalogue.models.values())
        return self.signer.sign(jpeg, label, credits)

    def label(self, style_key: str) -> AILabel:
        # A fresh random content number per result (GB 45438 ProduceID): it names this file and
        # nothing else, and is kept nowhere.
        common = {"software": self.config.software, "provider": self.config.provider, "content_id": uuid.uuid4().hex}
        if style_key == PICTURE_STYLE:
            return AILabel(SOURCE_NEURAL, "Your picture as style", **common)
        style = self.catalogue.get(style_key)
        source = SOURCE_NEURAL if style.neural else SOURCE_FILTER
        return AILabel(source, style.name, **common)

    def credits(self, style_key: str, face_aware: bool = False) -> tuple[ModelCredit, ...]:
        """The models a result of ``style_key`` was made with, with their licences."""
        if style_key == PICTURE_STYLE:
            keys = ["arbitrary_predict", "arbitrary_transform"]
        else:
            style = self.catalogue.get(style_key)
            if style.model is None:  # a hand-written filter: our own code
                return (ModelCredit(f"filter:{style.filter}", style.licence),)
            keys = [style.model.key]
        if face_aware:  # faces were found and kept gentler: the detector shaped the result too
            keys += ["face_short_range", "face_full_range"]
        return tuple(ModelCredit(key, self.catalogue.model(key).licence) for key in keys)

    def stylize(self, data: bytes, request: StyleRequest, style_data: bytes | None = None) -> StyledImage:
        """Decode, style and encode in one call (the CLI and simple callers). ``seconds`` is
        the whole call, decoding included."""
        started = time.perf_counter()
        if request.style != PICTURE_STYLE:
            self.catalogue.get(request.style)  # an unknown name fails before any decoding
        picture = self.load(data, detect_faces=request.face_aware)
        style_picture = self.load(style_data, detect_faces=False) if style_data is not None else None
        result = self.render(picture, request, style_picture)
        return replace(result, seconds=time.perf_counter() - started)

    # -- styles -----------------------------------------------------------------------------

    def _apply(self, style: Style, rgb: np.ndarray, cancel: Cancellation | None = None) -> np.ndarray:
        if style.kind == "network":
            return self.multistyle.run(rgb, style.weights, cancel)
        if style.kind == "filter":
            return FILTERS[style.filter](rgb)
        if style.kind == "custom":
            return self._custom(style, rgb, cancel)
        raise UnknownStyle(style.key)

    def _custom(self, style: Style, rgb: np.ndarray, cancel: Cancellation | None = None) -> np.ndarray:
        height, width = rgb.shape[:2]
        pad_h, pad_w = (-height) % 8, (-width) % 8
        x = rgb.astype(np.float32) * np.float32(style.input_range / 255.0)
        x = np.pad(x, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        assert style.model is not None  # only custom styles come here, and each is a model
        session = self.sessions.session(style.model)
        out = session.run(None, {session.get_inputs()[0].name: x}, run_options(cancel))[0][0, :, :height, :width]
        out = out.transpose(1, 2, 0) * np.float32(255.0 / style.input_range)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def _picture_style(self, rgb: np.ndarray, style_rgb: np.ndarray, strength: float, cancel: Cancellation | None = None) -> np.ndarray:
        import cv2

        options = run_options(cancel)
        vector = self.arbitrary.style_vector(style_rgb, options)
        if strength < 1.0:
            # Move between the photo's own style and the picture's: 0 stays close to the photo.
            vector = strength * vector + (1.0 - strength) * self.arbitrary.style_vector(rgb, options)
        small = self.arbitrary.run(rgb, vector, options)
        height, width = rgb.shape[:2]
        small_h, small_w = small.shape[:2]
        up = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        # The network works at 384 px: put back the photo's own fine detail (what a 384 px copy
        # of it lacks) so the result is sharp and the person's features stay crisp.
        own_small = cv2.resize(rgb, (small_w, small_h), interpolation=cv2.INTER_AREA)
        own_up = cv2.resize(own_small, (width, height), interpolation=cv2.INTER_CUBIC)
        detail = rgb.astype(np.int16) - own_up.astype(np.int16)
        return np.clip(up.astype(np.int16) + (detail * 3) // 4, 0, 255).astype(np.uint8)


def _margin(face: Face) -> tuple[int, int, int, int]:
    """A face's box with room for hair and chin around it (the detector boxes the features)."""
    dx, dy = face.width // 3, face.height // 2
    return (face.x - dx, face.y - dy, face.x + face.width + dx, face.y + face.height + dy)


def keep_colours(styled: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The styled image's brightness with the original photo's colours."""
    import cv2

    styled_ycc = cv2.cvtColor(styled, cv2.COLOR_RGB2YCrCb)
    original_ycc = cv2.cvtColor(original, cv2.COLOR_RGB2YCrCb)
    styled_ycc[..., 1:] = original_ycc[..., 1:]
    return cv2.cvtColor(styled_ycc, cv2.COLOR_YCrCb2RGB)


def blend(original: np.ndarray, styled: np.ndarray, strength: float, faces: list[Face], face_strength: float) -> np.ndarray:
    """Mix styled into original: ``strength`` everywhere, ``strength * face_strength`` over
    faces, changing smoothly at the edge of each face.

    In place, into ``styled`` (every style hands back a fresh array of its own): no full-size
    output, and the face mask and its per-pixel weights are built only over the faces' region
    (all of the mask that is not 0), not the whole picture: 15 -> 3 ms at 1280x960."""
    import cv2

    if faces and face_strength < 1.0:
        top, bottom, left, right = _faces_region(original.shape[0], original.shape[1], faces)
        region = (slice(top, bottom), slice(left, right))
        shifted = [replace(f, x=f.x - left, y=f.y - top) for f in faces]
        alpha = face_mask(bottom - top, right - left, shifted)
        alpha *= -(1.0 - face_strength)
        alpha += 1.0
        alpha *= strength  # strength * (1 - mask * (1 - face_strength)), in place
        # OpenCV weighs per pixel and rounds to uint8: no float copies of the images.
        faces_done = cv2.blendLinear(styled[region], original[region], alpha, np.subtract(1.0, alpha, dtype=np.float32))
    else:
        faces_done = None
    if strength < 1.0:
        cv2.addWeighted(styled, strength, original, 1.0 - strength, 0.0, dst=styled)
    if faces_done is not None:
        styled[region] = faces_done
    return styled


def _faces_region(height: int, width: int, faces: list[Face]) -> tuple[int, int, int, int]:
    """Top, bottom, left, right of where `face_mask` is not 0: each face's ellipse (faces.MASK_*
    of its box) and the Gaussian blur's reach around it (its kernel ends at 4 sigma, sigma being
    MASK_BLUR of the narrowest face, and at least one pixel of the mask's canvas, at most 1/256
    of the picture's long side), with a margin for rounding."""
    reach = 4 * MASK_BLUR * min(f.width for f in faces) + max(height, width) / 64 + 4
    top = min(f.y + (MASK_CENTRE_Y - MASK_HALF_HEIGHT) * f.height for f in faces) - reach
    bottom = max(f.y + (MASK_CENTRE_Y + MASK_HALF_HEIGHT) * f.height for f in faces) + reach
    left = min(f.x + (0.5 - MASK_HALF_WIDTH) * f.width for f in faces) - reach
    right = max(f.x + (0.5 + MASK_HALF_WIDTH) * f.width for f in faces) + reach
    return max(0, int(top)), min(height, math.ceil(bottom)), max(0, int(left)), min(width, math.ceil(right))


class AsyncEngine:
    """Runs engine work in worker threads, never on the event loop.

    Loading (decode and faces, one core) and rendering (the network on every core, then blend
    and encode) have slots of their own, ``concurrency`` each: the next photo is decoded and
    its faces found while the current one is styled, so the second core is not idle through a
    quarter-second of single-threaded work per photo. At most ``concurrency`` networks run at
    once, as before; what waits holds one decoded picture (~4 MB at 1280x960).

    Work waits on a semaphore, where cancelling the awaiting task removes it before it has
    started. Cancelling it once the work runs stops the work itself (a `Cancellation` handed to
    it), and the slot is given back only when the worker thread is free again.
    """

    # How long a cancelled call waits for its worker to stop (a killed decode or a terminated
    # onnxruntime run stops within milliseconds; face detection and JPEG encoding take a
    # fraction of a second and are not interrupted).
    STOP_WAIT = 10.0

    def __init__(self, engine: Engine, concurrency: int | None = None) -> None:
        self.engine = engine
        limit = concurrency or engine.config.concurrency
        self._executor = ThreadPoolExecutor(max_workers=2 * limit, thread_name_prefix="darkroom-engine")
        self._slots = asyncio.Semaphore(limit)  # renders (and any other call)
        self._load_slots = asyncio.Semaphore(limit)

    async def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, cancel=<Cancellation>, **kwargs)`` in a worker thread."""
        return await self._run(self._slots, fn, *args, **kwargs)

    async def _run(self, slots: asyncio.Semaphore, fn: Callable[..., T], *args, **kwargs) -> T:
        async with slots:
            cancel = Cancellation()
            work = self._executor.submit(partial(fn, *args, cancel=cancel, **kwargs))
            try:
                return await asyncio.wrap_future(work)
            except asyncio.CancelledError:
                cancel.cancel()
                await asyncio.wait([asyncio.wrap_future(work)], timeout=self.STOP_WAIT)
                raise

    async def load(self, data: bytes | bytearray, detect_faces: bool = True) -> Picture:
        return await self._run(self._load_slots, self.engine.load, data, detect_faces)

    async def render(self, picture: Picture, request: StyleRequest, style_picture: Picture | None = None) -> StyledImage:
        return await self.call(self.engine.render, picture, request, style_picture)

    async def render_sheet(self, picture: Picture, language: str = "en", mark: bool = False) -> StyledImage:
        return await self.call(self.engine.render_sheet, picture, language, mark)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
