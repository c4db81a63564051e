"""The on-device page ("Mini App"): served under /app/ by the existing aiohttp server.

Everything the page needs is served from here, nothing from anywhere else: the page itself, the
vendored onnxruntime-web and Telegram Web App files (pinned by SHA-256, committed compressed),
the 26-style model and the BlazeFace face models, built at start-up from their installed packages'
files after the catalogue's SHA-256 check and packed smaller without losing a bit (`served_model`,
`packing.py`), and `styles.json` generated from the catalogue.

The photo never comes here. The one endpoint that accepts an image is the explicit opt-in
"send the styled result to my chat" (`POST /app/send`), which needs a Telegram `initData`
signed with this bot's token and not older than `INIT_DATA_MAX_AGE`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import logging
import time
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl

from aiohttp import web

from bot.web.packing import pack_graph, unpack_graph
from handlers.page_results import NotDelivered
from handlers.ports import QueueRefused
from handlers.texts import page_texts
from inference import Catalogue, __version__
from inference.errors import ModelIntegrityError
from inference.imageio import SOURCE_FILTER, SOURCE_NEURAL
from inference.networks import fast_multistyle_graph

log = logging.getLogger("darkroom.webapp")

STATIC = Path(__file__).resolve().parent / "static"
VENDOR = STATIC / "vendor"
PAGE_FILES = {  # name -> content type; the page's own files, small and served as they are
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "worker.js": "text/javascript; charset=utf-8",
    "core.js": "text/javascript; charset=utf-8",
    "blazeface.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "sw.js": "text/javascript; charset=utf-8",
    "manifest.webmanifest": "application/manifest+json; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
# The page's tags that carry Subresource Integrity, added at start-up from the files' own bytes.
SRI_TAGS = ('src="vendor/telegram-web-apps.js"', 'src="app.js"', 'href="app.css"')
VENDOR_TYPES = {".mjs": "text/javascript; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".wasm": "application/wasm"}
MODELS = {  # served name -> catalogue model key
    "multistyle26-phase.onnx": "multistyle26",
    "face_short_range.onnx": "face_short_range",
    "face_full_range.onnx": "face_full_range",
}
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; "
    "worker-src 'self' blob:; img-src 'self' blob: data:; style-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors https://web.telegram.org 'self'"
)
ISOLATION_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
IMMUTABLE = "public, max-age=31536000, immutable"  # pinned files: their URL carries their hash
SHORT = "public, max-age=300"  # the page and styles.json: pick up a new release soon
INIT_DATA_MAX_AGE = 3600  # seconds an initData stays good for the opt-in upload
MAX_SEND_BYTES = 10 * 1024 * 1024  # a styled JPEG at 1280 px is well under 1 MB
# Uploads read at once, for everyone together: bounds their memory at 4 x MAX_SEND_BYTES. Each
# person has one at a time; the queue's per-person limits (handlers/page_results.py) do the rest.
MAX_UPLOADS = 4


class InitDataError(ValueError):
    """A Telegram initData that is not signed by our token, malformed, or too old."""


@dataclass(frozen=True)
class WebAppUser:
    id: int
    language: str


def validate_init_data(init_data: str, bot_token: str, max_age: int = INIT_DATA_MAX_AGE, now: float | None = None) -> WebAppUser:
    """Telegram's Web App check: HMAC-SHA256 of the sorted ``key=value`` lines (without
    ``hash``) under the key HMAC-SHA256("WebAppData", bot_token); then the age."""
    if not init_data or not bot_token:
        raise InitDataError("missing")
    pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=False)
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise InitDataError("repeated field")
    given = fields.pop("hash", "")
    if not given:
        raise InitDataError("no hash")
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()))
    secret = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    expected = hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise InitDataError("bad signature")
    try:
        auth_date = int(fields.get("auth_date", ""))
    except ValueError:
        raise InitDataError("no auth_date") from None
    age = (time.time() if now is None else now) - auth_date
    if age > max_age or age < -60:
        raise InitDataError("stale")
    try:
        user = json.loads(fields.get("user", ""))
        return WebAppUser(id=int(user["id"]), language="zh" if str(user.get("language_code", "")).startswith("zh") else "en")
    except (ValueError, KeyError, TypeError):
        raise InitDataError("no user") from None


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    gz: bytes | None = None
    br: bytes | None = None
    cache: str = IMMUTABLE


def _verified_vendor() -> dict[str, Asset]:
    """The vendored files, each checked against its pins; a mismatch stops start-up."""
    pins = tomllib.loads((VENDOR / "pins.toml").read_text())
    assets = {}
    for name, pin in pins.items():
        br = (VENDOR / f"{name}.br").read_bytes()
        gz = (VENDOR / f"{name}.gz").read_bytes()
        raw = gzip.decompress(gz)
        for label, data, expected in (("br", br, pin["br"]), ("gz", gz, pin["gz"]), ("raw", raw, pin["sha256"])):
            if hashlib.sha256(data).hexdigest() != expected:
                raise ModelIntegrityError(
                    f"vendored page file {name} ({label}) does not match its SHA-256 pin in {VENDOR / 'pins.toml'}; "
                    "reinstall Darkroom"
                )
        assets[name] = Asset(body=raw, content_type=VENDOR_TYPES[Path(name).suffix], gz=gz, br=br)
    return assets


def styles_document(catalogue: Catalogue, software: str, provider: str = "") -> dict:
    """What the page shows and runs: the neural styles (the ones that run on a phone), with
    names, descriptions and licences in both languages, and the models' checksums."""
    styles = []
    for s in catalogue.styles:
        if s.kind != "network":
            continue  # hand-written filters and custom models run on the server only
        styles.append(
            {
                "key": s.key,
                "name": {"en": s.name, "zh": s.name_zh},
                "description": {"en": s.description, "zh": s.description_zh},
                "licence": s.licence,
                "weights": [float(w) for w in s.weights],
                "face_strength": s.face_strength,
                "source_type": SOURCE_NEURAL if s.neural else SOURCE_FILTER,
            }
        )
    return {
        "software": software,
        "provider": provider,  # the GB 45438 label's ContentProducer on the page's results too
        "version": __version__,
        "max_side": 1280,
        "styles": styles,
        "models": {},
        "texts": page_texts(),
    }


def page_graph(catalogue: Catalogue, name: str) -> bytes:
    """The ONNX file the page runs for ``name``, built from the package's file after the
    catalogue's SHA-256 check: for the 26-style network, the same faster equivalent graph the
    server's engine builds (about 170 MB less peak memory in the browser, measured); for the
    BlazeFace models, the committed file itself."""
    data = catalogue.model(MODELS[name]).read_verified()
    return fast_multistyle_graph(data) if name == "multistyle26-phase.onnx" else data


def served_model(catalogue: Catalogue, name: str) -> bytes:
    """The bytes the page gets for ``name``: `page_graph`, packed (`packing.pack_graph`: its
    float32 weights as float16 or as palettes where that is exact; gzipped, 1.82 -> 1.41 MB for
    the three models), checked here to unpack to that graph byte for byte."""
    return _packed(name, page_graph(catalogue, name))


def _packed(name: str, graph: bytes) -> bytes:
    packed = pack_graph(graph)
    if unpack_graph(packed) != graph:  # never expected; the page checks the same on its side
        raise ModelIntegrityError(f"packing {name} for the page does not give it back byte for byte")
    return packed


class WebApp:
    """The /app/ routes. ``send_styled(user_id, jpeg, language)`` delivers an opted-in result
    (None: no Telegram, so the opt-in endpoint answers 404)."""

    def __init__(
        self,
        catalogue: Catalogue,
        software: str,
        bot_token: str = "",
        send_styled: Callable[[int, bytes, str], Awaitable[None]] | None = None,
        max_age: int = INIT_DATA_MAX_AGE,
        provider: str = "",
    ) -> None:
        self.bot_token = bot_token
        self.send_styled = send_styled
        self.max_age = max_age
        self._uploading: set[int] = set()  # who has an upload being read or delivered now
        self.assets: dict[str, Asset] = {}
        vendor = {f"vendor/{n}": a for n, a in _verified_vendor().items()}
        own = {name: (STATIC / name).read_bytes() for name in PAGE_FILES}
        own["index.html"] = _with_integrity(own["index.html"], own | {n: a.body for n, a in vendor.items()})
        for name, data in own.items():  # small, so compressed once here, not on every request
            self.assets[name] = Asset(body=data, content_type=PAGE_FILES[name], cache=SHORT, gz=gzip.compress(data, 9, mtime=0))
        self.assets.update(vendor)
        document = styles_document(catalogue, software, provider)
        for name, key in MODELS.items():
            graph = page_graph(catalogue, name)  # checked against the catalogue's SHA-256 first
            data = _packed(name, graph)  # what served_model() gives
            digest = hashlib.sha256(data).hexdigest()
            self.assets[f"models/{name}"] = Asset(body=data, content_type="application/octet-stream", gz=gzip.compress(data, 6, mtime=0))
            # the page checks what arrives against sha256 before using it, then the ONNX file it
            # rebuilds from it against graph_sha256 (for the face models: catalogue_sha256)
            document["models"][name] = {"url": f"models/{name}?v={digest[:16]}", "sha256": digest,
                                        "graph_sha256": hashlib.sha256(graph).hexdigest(),
                                        "catalogue_sha256": catalogue.model(key).sha256.lower()}
        # What runs, so anyone can check it ("About" on the page), and what the service worker
        # keeps for offline use: every file by the URL the page uses, with its SHA-256.
        document["files"] = {name: hashlib.sha256(asset.body).hexdigest() for name, asset in self.assets.items() if not name.startswith("models/")}
        document["files"].update({model["url"]: model["sha256"] for model in document["models"].values()})
        body = json.dumps(document, ensure_ascii=False).encode()
        self.assets["styles.json"] = Asset(body=body, content_type="application/json; charset=utf-8", cache=SHORT,
                                           gz=gzip.compress(body, 9, mtime=0))

    def add_routes(self, app: web.Application) -> None:
        app.on_response_prepare.append(_security_headers)
        app.router.add_get("/app", self._redirect)
        app.router.add_get("/app/", self._asset)
        app.router.add_get("/app/{path:.+}", self._asset)
        app.router.add_post("/app/send", self._send)

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect("/app/")

    async def _asset(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info.get("path", "") or "index.html"
        asset = self.assets.get(path)
        if asset is None:
            return web.Response(status=404, text="not found", headers=ISOLATION_HEADERS)
        accepted = _accepted_encodings(request.headers.get("Accept-Encoding", ""))
        headers = dict(ISOLATION_HEADERS)
        headers["Cache-Control"] = asset.cache
        headers["Vary"] = "Accept-Encoding"
        body = asset.body
        if asset.br is not None and "br" in accepted:
            body, headers["Content-Encoding"] = asset.br, "br"
        elif asset.gz is not None and "gzip" in accepted:
            body, headers["Content-Encoding"] = asset.gz, "gzip"
        # Our own bytes are final: no on-the-fly compression by aiohttp on top of them.
        return web.Response(body=body, content_type=asset.content_type.split(";")[0], charset=_charset(asset), headers=headers)

    async def _send(self, request: web.Request) -> web.Response:
        """The opt-in: only a styled JPEG, only with a valid initData, delivered and forgotten."""
        headers = dict(ISOLATION_HEADERS)
        if self.send_styled is None or not self.bot_token:
            return web.Response(status=404, text="not found", headers=headers)
        try:
            user = validate_init_data(request.headers.get("X-Telegram-Init-Data", ""), self.bot_token, self.max_age)
        except InitDataError as exc:
            log.info("refused an on-device upload: %s initData", exc)
            return web.Response(status=403, text="forbidden", headers=headers)
        if request.content_type != "image/jpeg" or (request.content_length or 0) > MAX_SEND_BYTES:
            return web.Response(status=415, text="a styled JPEG only", headers=headers)
        if user.id in self._uploading or len(self._uploading) >= MAX_UPLOADS:
            # before a byte of the body is read: one at a time per person, a few for everyone
            log.info("refused an on-device upload: another is in progress")
            return web.json_response({"status": "busy"}, status=429, headers={**headers, "Retry-After": "5"})
        self._uploading.add(user.id)
        try:
            return await self._receive_and_send(request, user, headers)
        finally:
            self._uploading.discard(user.id)

    async def _receive_and_send(self, request: web.Request, user: WebAppUser, headers: dict[str, str]) -> web.Response:
        assert self.send_styled is not None
        body = bytearray()
        async for chunk in request.content.iter_chunked(65536):
            body += chunk
            if len(body) > MAX_SEND_BYTES:
                return web.Response(status=413, text="too large", headers=headers)
        try:
            if not _is_labelled_jpeg(body):
                return web.Response(status=415, text="a styled JPEG only", headers=headers)
            await self.send_styled(user.id, bytes(body), user.language)
        except PermissionError:
            return web.json_response({"status": "consent-needed"}, status=409, headers=headers)
        except QueueRefused as exc:
            log.info("refused an on-device upload: %s", exc.reason)
            retry = {"Retry-After": str(max(1, int(exc.retry_after)))} if exc.retry_after else {}
            return web.json_response({"status": exc.reason}, status=429, headers={**headers, **retry})
        except NotDelivered as exc:
            log.info("an on-device result was not delivered: %s", exc)
            return web.json_response({"status": "not-delivered"}, status=409, headers=headers)
        except Exception as exc:
            log.warning("an on-device result could not be delivered: %s", type(exc).__name__)
            return web.Response(status=502, text="not delivered", headers=headers)
        finally:
            body[:] = b"\0" * len(body)  # the styled picture is not kept here either
            del body
        return web.json_response({"status": "sent"}, headers=headers)


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer carries the page's security headers, aiohttp's own 404 and 405 too."""
    for name, value in ISOLATION_HEADERS.items():
        response.headers.setdefault(name, value)


def _with_integrity(html: bytes, files: dict[str, bytes]) -> bytes:
    """index.html with `integrity="sha384-…"` on its script and stylesheet tags."""
    for tag in SRI_TAGS:
        name = tag.split('"')[1]
        digest = base64.b64encode(hashlib.sha384(files[name]).digest()).decode()
        html = html.replace(tag.encode(), f'{tag} integrity="sha384-{digest}"'.encode(), 1)
    return html


def _charset(asset: Asset) -> str | None:
    return "utf-8" if "charset=utf-8" in asset.content_type else None


def _accepted_encodings(header: str) -> set[str]:
    accepted = set()
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name and q > 0:
            accepted.add(name.strip().lower())
    return accepted


def _is_labelled_jpeg(data: bytes | bytearray) -> bool:
    """The opt-in takes only what the page makes: a JPEG carrying Darkroom's AI label."""
    return data[:3] == b"\xff\xd8\xff" and b"Iptc4xmpExt:DigitalSourceType" in data[:65536] and b"AI-styled image" in data[:65536]
