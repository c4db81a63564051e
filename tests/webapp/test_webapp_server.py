"""The /app/ routes without a browser: pinned and verified files, compression by what the client
accepts, isolation headers, styles.json from the catalogue, initData validation, and the only
endpoint that takes a picture (the opt-in) refusing what it must."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import shutil
import time
from urllib.parse import parse_qsl, urlencode

import aiohttp
import brotli
import numpy as np
import pytest

from bot.web import page as webapp_module
from bot.web.packing import unpack_graph
from bot.web.page import InitDataError, WebApp, validate_init_data
from bot.web.server import HttpServer, build_app
from inference import ModelIntegrityError
from tests.conftest import ALICE, BOB, TOKEN, jpeg_bytes, running_bot
from tests.webapp.initdata import signed_init_data

PINS = {name: pin for name, pin in __import__("tomllib").loads((webapp_module.VENDOR / "pins.toml").read_text()).items()}


# -- initData ---------------------------------------------------------------------------------


def test_valid_init_data_is_accepted():
    user = validate_init_data(signed_init_data(TOKEN, 42, "zh-hans"), TOKEN)
    assert (user.id, user.language) == (42, "zh")


@pytest.mark.parametrize(
    "tamper",
    [
        lambda d: d.replace("%22id%22%3A42", "%22id%22%3A43"),  # another user
        lambda d: d.replace("auth_date=", "auth_date=1"),  # another time
        lambda d: urlencode([(k, v) for k, v in parse_qsl(d) if k != "hash"]),  # unsigned
        lambda d: d + "&extra=1",  # a field added after signing
        lambda d: d + "&hash=" + "0" * 64,  # a second hash
        lambda d: "",
    ],
)
def test_tampered_init_data_is_refused(tamper):
    data = signed_init_data(TOKEN, 42)
    with pytest.raises(InitDataError):
        validate_init_data(tamper(data), TOKEN)


def test_init_data_signed_with_another_token_or_stale_is_refused():
    with pytest.raises(InitDataError, match="signature"):
        validate_init_data(signed_init_data("999:other", 42), TOKEN)
    with pytest.raises(InitDataError, match="stale"):
        validate_init_data(signed_init_data(TOKEN, 42, auth_date=int(time.time()) - 2 * 3600), TOKEN)
    with pytest.raises(InitDataError, match="stale"):  # from the future
        validate_init_data(signed_init_data(TOKEN, 42, auth_date=int(time.time()) + 3600), TOKEN)
    assert validate_init_data(signed_init_data(TOKEN, 42, auth_date=int(time.time()) - 50), TOKEN, max_age=60).id == 42


# -- serving ----------------------------------------------------------------------------------


@pytest.fixture
async def page_server(engine):
    app = build_app(webapp=WebApp(engine.catalogue, engine.config.software))
    server = HttpServer(app, "127.0.0.1", 0)
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def _get(url: str, accept: str | None):
    headers = {"Accept-Encoding": accept} if accept is not None else {"Accept-Encoding": "identity"}
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(url, headers=headers) as response:
            return response.status, response.headers, await response.read()


@pytest.mark.parametrize("accept, encoding", [("gzip, deflate, br, zstd", "br"), ("gzip, deflate", "gzip"), (None, None), ("br;q=0, gzip", "gzip")])
async def test_vendored_files_are_served_by_what_the_client_accepts(page_server, accept, encoding):
    for name, pin in PINS.items():
        status, headers, body = await _get(f"{page_server}/app/vendor/{name}", accept)
        assert status == 200
        assert headers.get("Content-Encoding") == encoding
        raw = brotli.decompress(body) if encoding == "br" else gzip.decompress(body) if encoding == "gzip" else body
        assert hashlib.sha256(raw).hexdigest() == pin["sha256"], name
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert headers["Vary"] == "Accept-Encoding"
    status, headers, _ = await _get(f"{page_server}/app/vendor/ort-wasm-simd-threaded.wasm", accept)
    assert headers["Content-Type"] == "application/wasm"


async def test_isolation_headers_on_every_page_file(page_server):
    for path in ("/app/", "/app/app.js", "/app/worker.js", "/app/styles.json", "/app/models/multistyle26-phase.onnx", "/app/nope"):
        _, headers, _ = await _get(page_server + path, "gzip")
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self' 'wasm-unsafe-eval'" in csp
        assert "connect-src 'self'" in csp and "worker-src 'self' blob:" in csp
        assert "unsafe-inline" not in csp and "'unsafe-eval'" not in csp
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
        assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
        assert headers["Cross-Origin-Resource-Policy"] == "same-origin"


async def test_models_come_verified_from_their_packages(page_server, engine):
    _, _, document = await _get(f"{page_server}/app/styles.json", None)
    styles = json.loads(document)
    for name, key in webapp_module.MODELS.items():
        model = engine.catalogue.model(key)
        entry = styles["models"][name]
        assert entry["catalogue_sha256"] == model.sha256
        _, _, body = await _get(f"{page_server}/app/{entry['url']}", None)
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        graph = unpack_graph(body)  # sent packed; the page unpacks it and checks graph_sha256
        assert hashlib.sha256(graph).hexdigest() == entry["graph_sha256"]
        assert len(body) < 0.6 * len(graph)
        if name.startswith("face_"):  # BlazeFace: the committed file itself
            assert graph == model.path.read_bytes() and entry["graph_sha256"] == model.sha256
        else:  # the engine's own faster graph, built from the verified package file
            from inference.networks import fast_multistyle_graph

            assert graph == fast_multistyle_graph(model.path.read_bytes())
    keys = [s["key"] for s in styles["styles"]]
    neural = [s.key for s in engine.catalogue.styles if s.kind == "network"]
    assert keys == neural
    first = styles["styles"][0]
    style = engine.catalogue.get(first["key"])
    assert first["name"] == {"en": style.name, "zh": style.name_zh}
    assert first["description"]["zh"] == style.description_zh
    assert first["licence"] == style.licence and first["face_strength"] == style.face_strength
    assert np.allclose(first["weights"], style.weights)


def test_a_tampered_vendored_file_stops_start_up(engine, tmp_path, monkeypatch):
    copy = tmp_path / "vendor"
    shutil.copytree(webapp_module.VENDOR, copy)
    target = copy / "ort-wasm-simd-threaded.wasm.br"
    data = bytearray(target.read_bytes())
    data[1000] ^= 1
    target.write_bytes(bytes(data))
    monkeypatch.setattr(webapp_module, "VENDOR", copy)
    with pytest.raises(ModelIntegrityError, match="ort-wasm-simd-threaded.wasm"):
        WebApp(engine.catalogue, engine.config.software)


def test_no_endpoint_takes_a_photo_except_the_opt_in(engine):
    app = build_app(webapp=WebApp(engine.catalogue, engine.config.software, bot_token=TOKEN, send_styled=lambda *a: None))
    posts = sorted(r.resource.canonical for r in app.router.routes() if r.method not in ("GET", "HEAD"))
    assert posts == ["/app/send"]


# -- the opt-in, end to end through the bot ------------------------------------------------------


def _styled_jpeg(label: bool = True) -> bytes:
    from inference.imageio import SOURCE_NEURAL, AILabel, encode_jpeg

    rgb = np.full((64, 48, 3), 120, dtype=np.uint8)
    if label:
        return encode_jpeg(rgb, AILabel(SOURCE_NEURAL, "Ink wash", "Darkroom test"))
    return jpeg_bytes(rgb)


async def _send(url: str, init_data: str, body: bytes, content_type: str = "image/jpeg"):
    async with aiohttp.ClientSession() as session:
        headers = {"X-Telegram-Init-Data": init_data, "Content-Type": content_type}
        async with session.post(f"{url}/app/send", data=body, headers=headers) as response:
            return response.status, await response.text()


async def test_telegram_offers_the_page_and_the_opt_in_upload_checks_init_data(fake_telegram, data_dir, engine):
    fake = fake_telegram
    page = "https://darkroom.example/app/"
    async with running_bot(fake, data_dir, engine, DARKROOM_WEBAPP_URL=page) as darkroom:
        url = f"http://127.0.0.1:{darkroom.http.port}"
        [menu] = fake.calls_to("setChatMenuButton")
        assert page in json.dumps(menu.params) and "web_app" in json.dumps(menu.params)

        await fake.send_text_from(ALICE, "/start")
        notice = await fake.wait_for_text("Do you agree?", chat_id=ALICE.id)
        markup = notice.params["reply_markup"]
        web_apps = [b["web_app"]["url"] for row in markup["inline_keyboard"] for b in row if "web_app" in b]
        assert web_apps == [page]
        labels = [b["text"] for row in markup["inline_keyboard"] for b in row]
        assert any("the photo is never sent" in label for label in labels)
        assert "Two ways to use Darkroom" in notice.params["text"] and "never the original" in notice.params["text"]
        await fake.press(ALICE, "consent:agree")
        await fake.wait_for_text("Thank you", chat_id=ALICE.id)

        styled = _styled_jpeg()
        assert (await _send(url, signed_init_data(TOKEN, ALICE.id), styled))[0] == 200
        [sent] = await fake.wait_for("sendPhoto", chat_id=ALICE.id)
        assert sent.files["photo"] == styled
        assert "never left your device" in sent.params["caption"]

        tampered = signed_init_data(TOKEN, ALICE.id).replace(str(ALICE.id), str(BOB.id))
        stale = signed_init_data(TOKEN, ALICE.id, auth_date=int(time.time()) - 7200)
        assert (await _send(url, tampered, styled))[0] == 403
        assert (await _send(url, stale, styled))[0] == 403
        assert (await _send(url, signed_init_data("1:other", ALICE.id), styled))[0] == 403
        assert (await _send(url, signed_init_data(TOKEN, ALICE.id), _styled_jpeg(label=False)))[0] == 415
        assert (await _send(url, signed_init_data(TOKEN, ALICE.id), styled, "image/png"))[0] == 415
        # a person without consent on record: nothing is sent
        status, body = await _send(url, signed_init_data(TOKEN, BOB.id, "zh-hans"), styled)
        assert status == 409 and "consent" in body
        await asyncio.sleep(0.2)
        assert len(fake.calls_to("sendPhoto")) == 1


def test_wechat_shows_the_page_as_a_link():
    from bot.platforms.wechat.client import _typed_choices
    from handlers.consent import consent_buttons
    from handlers.context import ConversationSettings

    text = _typed_choices(consent_buttons(ConversationSettings(webapp_url="https://d.example/app/"), "zh"))
    assert "在我的手机上处理——照片不会被发送: https://d.example/app/" in text
    assert "[同意]" in text
    assert "https://" not in _typed_choices(consent_buttons(ConversationSettings(), "zh"))


def test_darkroom_run_on_a_busy_port_ends_with_one_clear_line(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
        env.update(DARKROOM_HTTP_PORT=str(port), DARKROOM_DATA_DIR=str(tmp_path / "data"))
        darkroom = str(Path(sys.executable).parent / "darkroom")
        done = subprocess.run([darkroom, "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("darkroom:")]
    assert errors == [f"darkroom: cannot listen on 127.0.0.1:{port} (Address already in use); is another program using it? Set DARKROOM_HTTP_HOST / DARKROOM_HTTP_PORT"]
    assert "Traceback" not in done.stderr


async def test_the_pages_own_files_are_compressed_and_listed_with_their_hashes(page_server):
    status, headers, body = await _get(f"{page_server}/app/styles.json", "gzip, br")
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    files = json.loads(gzip.decompress(body))["files"]
    for name in ("index.html", "app.js", "worker.js", "core.js", "app.css", "sw.js"):
        status, headers, body = await _get(f"{page_server}/app/{name}", "gzip")
        assert headers["Content-Encoding"] == "gzip", name
        assert hashlib.sha256(gzip.decompress(body)).hexdigest() == files[name], name
    _, _, html = await _get(f"{page_server}/app/", None)
    _, _, script = await _get(f"{page_server}/app/app.js", None)
    sri = base64.b64encode(hashlib.sha384(script).digest()).decode()
    assert f'src="app.js" integrity="sha384-{sri}"'.encode() in html
    assert any(name.startswith("models/multistyle26-phase.onnx?v=") for name in files)
