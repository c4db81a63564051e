"""The styling engine: bytes in, labelled JPEG bytes out, all in memory.

It knows nothing about chats. `Engine` is synchronous and thread-safe (CPU-bound work for a
worker thread); `AsyncEngine` runs it off the event loop with bounded concurrency, and
cancelling the awaiting task stops the work itself: queued work never starts, a running decode
is killed and a running onnxruntime session is terminated (see inference/cancel.py).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from .version import __version__
from .cancel import Cancellation, Cancelled, run_options
from .backends import DEFAULT_MAX_SHAPES, BackendChoice, BackendPreference
from .catalogue import Catalogue, Style, load_catalogue
from .errors import InferenceError, UnknownStyle
from .faces import Face, FaceDetector, face_mask
from .faithful import FILTERS
from .imageio import SOURCE_FILTER, SOURCE_NEURAL, AILabel, DecodeLimits, decode, encode_jpeg
from .models import SessionPool, machine_threads
from .networks import ArbitraryStyleNetwork, MultiStyleNetwork

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

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels, max_side=self.max_side)


@dataclass(frozen=True)
class StyleRequest:
    style: str
    strength: float = 1.0
    keep_colours: bool = False
    face_aware: bool = True

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
        )
        self.arbitrary = ArbitraryStyleNetwork(
            self.catalogue.model("arbitrary_predict"), self.catalogue.model("arbitrary_transform"), self.sessions
        )
        # One thread: the face networks are tiny (1-4 ms), and on this 2-core machine two threads
        # made them 2.5x slower while other work ran (bench/faces.py).
        self.faces = FaceDetector(self.catalogue.model("face_short_range"), self.catalogue.model("face_full_range"), SessionPool(1))

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
            if style.kind == "custom":
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
        jpeg = encode_jpeg(
            out,
            self.label(request.style),
            quality=self.config.jpeg_quality,
            visible_label=self.config.visible_label,
        )
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

    def label(self, style_key: str) -> AILabel:
        if style_key == PICTURE_STYLE:
            return AILabel(SOURCE_NEURAL, "Your picture as style", self.config.software)
        style = self.catalogue.get(style_key)
        source = SOURCE_NEURAL if style.neural else SOURCE_FILTER
        return AILabel(source, style.name, self.config.software)

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


def keep_colours(styled: np.ndarray, original: np.ndarray) -> np.ndarray:
    """The styled image's brightness with the original photo's colours."""
    import cv2

    styled_ycc = cv2.cvtColor(styled, cv2.COLOR_RGB2YCrCb)
    original_ycc = cv2.cvtColor(original, cv2.COLOR_RGB2YCrCb)
    styled_ycc[..., 1:] = original_ycc[..., 1:]
    return cv2.cvtColor(styled_ycc, cv2.COLOR_YCrCb2RGB)


def blend(original: np.ndarray, styled: np.ndarray, strength: float, faces: list[Face], face_strength: float) -> np.ndarray:
    """Mix styled into original: ``strength`` everywhere, ``strength * face_strength`` over
    faces, changing smoothly at the edge of each face."""
    import cv2

    if not faces or face_strength >= 1.0:
        if strength >= 1.0:
            return styled
        return cv2.addWeighted(styled, strength, original, 1.0 - strength, 0.0)
    height, width = original.shape[:2]
    mask = face_mask(height, width, faces)
    alpha = mask
    alpha *= -(1.0 - face_strength)
    alpha += 1.0
    alpha *= strength  # strength * (1 - mask * (1 - face_strength)), in place
    # One pass, no float copies of the images (OpenCV weighs per pixel and rounds to uint8).
    return cv2.blendLinear(styled, original, alpha, np.subtract(1.0, alpha, dtype=np.float32))


class AsyncEngine:
    """Runs engine work in worker threads, never on the event loop.

    At most ``concurrency`` calls run at once; the rest wait on a semaphore, where cancelling
    the awaiting task removes the work before it has started. Cancelling it once the work runs
    stops the work itself (a `Cancellation` handed to it), and the slot is given back only when
    the worker thread is free again.
    """

    # How long a cancelled call waits for its worker to stop (a killed decode or a terminated
    # onnxruntime run stops within milliseconds; face detection and JPEG encoding take a
    # fraction of a second and are not interrupted).
    STOP_WAIT = 10.0

    def __init__(self, engine: Engine, concurrency: int | None = None) -> None:
        self.engine = engine
        limit = concurrency or engine.config.concurrency
        self._executor = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="darkroom-engine")
        self._slots = asyncio.Semaphore(limit)

    async def call(self, fn: Callable[..., T], *args, **kwargs) -> T:
        """``fn(*args, cancel=<Cancellation>, **kwargs)`` in a worker thread."""
        async with self._slots:
            cancel = Cancellation()
            work = self._executor.submit(partial(fn, *args, cancel=cancel, **kwargs))
            try:
                return await asyncio.wrap_future(work)
            except asyncio.CancelledError:
                cancel.cancel()
                await asyncio.wait([asyncio.wrap_future(work)], timeout=self.STOP_WAIT)
                raise

    async def load(self, data: bytes | bytearray, detect_faces: bool = True) -> Picture:
        return await self.call(self.engine.load, data, detect_faces)

    async def render(self, picture: Picture, request: StyleRequest, style_picture: Picture | None = None) -> StyledImage:
        return await self.call(self.engine.render, picture, request, style_picture)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
