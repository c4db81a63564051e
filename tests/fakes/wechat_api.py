"""A fake WeChat API (token, media/get, media/upload, message/custom/send) on 127.0.0.1, and a
sender that builds, signs and encrypts callbacks the way WeChat's servers do."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import string
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from wechatpy.crypto import WeChatCrypto

APPID = "wx1234567890abcdef"
APPSECRET = "fake-app-secret-0123456789abcdef"
TOKEN = "darkroomcallbacktoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as in the console

# Bounded for the same reason as the fake Bot API's records (tests/fakes/telegram_api.py): a
# runaway fails its test with one clear line instead of growing the test process without end.
MAX_CALLS = 50_000
MAX_UPLOADED_BYTES = 1 << 30


@dataclass
class ApiCall:
    path: str
    params: dict[str, str]
    body: Any
    at: float
    ok: bool = False


@dataclass
class FakeWeChatApi:
    tokens_issued: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    media: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, bytes] = field(default_factory=dict)
    calls: list[ApiCall] = field(default_factory=list)
    down: bool = False
    _runner: web.AppRunner | None = None
    url: str = ""
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _changed: asyncio.Condition | None = None
    max_calls: int = MAX_CALLS
    max_uploaded_bytes: int = MAX_UPLOADED_BYTES
    overflow: str = ""  # why the fake stopped answering; every wait and `stop` fail with it
    _uploaded_bytes: int = 0

    async def start(self) -> FakeWeChatApi:
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=[self._bounded])
        app.router.add_get("/cgi-bin/token", self._token)
        app.router.add_get("/cgi-bin/media/get", self._media_get)
        app.router.add_post("/cgi-bin/media/upload", self._media_upload)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom_send)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self.check()

    def check(self) -> None:
        """Fail (the test) if the fake had to stop answering."""
        if self.overflow:
            raise AssertionError(self.overflow)

    @web.middleware
    async def _bounded(self, request: web.Request, handler) -> web.StreamResponse:
        if not self.overflow and len(self.calls) >= self.max_calls:
            self.overflow = (
                f"the fake WeChat API received more than {self.max_calls} calls: a retry loop without back-off? "
                f"last paths: {self.paths()[-5:]}"
            )
        if not self.overflow and self._uploaded_bytes > self.max_uploaded_bytes:
            self.overflow = f"the fake WeChat API was sent more than {self.max_uploaded_bytes >> 20} MB of uploads"
        if self.overflow:
            async with self._changed:
                self._changed.notify_all()  # a test waiting fails now, with the reason
            return web.json_response({"errcode": -1, "errmsg": self.overflow}, status=500)
        return await handler(request)

    async def _record(self, request: web.Request, body: Any) -> ApiCall:
        call = ApiCall(request.path, dict(request.query), body, time.monotonic())
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()
        return call

    def expire_tokens(self) -> None:
        """Every issued token becomes invalid (errcode 42001), as after 2 hours."""
        self.valid_tokens.clear()

    def _token_error(self, request: web.Request) -> web.Response | None:
        if self.down:
            return web.Response(status=502)
        if request.query.get("access_token") not in self.valid_tokens:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        return None

    async def _token(self, request: web.Request) -> web.Response:
        await self._record(request, None)
        if self.down:
            return web.Response(status=502)
        if request.query.get("appid") != APPID or request.query.get("secret") != APPSECRET:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        self.tokens_issued += 1
        token = f"ACCESS_TOKEN_{self.tokens_issued}_{''.join(random.choices(string.ascii_letters, k=24))}"
        self.valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def _media_get(self, request: web.Request) -> web.Response:
        await self._record(request, None)
        error = self._token_error(request)
        if error is not None:
            return error
        data = self.media.get(request.query.get("media_id", ""))
        if data is None:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        return web.Response(body=data, content_type="image/jpeg")

    async def _media_upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        field_ = form.get("media")
        data = field_.file.read() if isinstance(field_, web.FileField) else b""
        await self._record(request, {"type": request.query.get("type"), "size": len(data)})
        error = self._token_error(request)
        if error is not None:
            return error
        media_id = f"UPLOADED_{next(self._ids)}"
        self.uploads[media_id] = data
        self._uploaded_bytes += len(data)
        return web.json_response({"type": "image", "media_id": media_id, "created_at": int(time.time())})

    async def _custom_send(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        error = self._token_error(request)
        call = await self._record(request, body)
        if error is not None:
            return error
        call.ok = True
        async with self._changed:
            self._changed.notify_all()
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    # -- looking at what happened ---------------------------------------------------------------

    def sent(self, openid: str | None = None) -> list[dict]:
        """Customer-service messages accepted (with a valid token), in order."""
        return [
            c.body
            for c in self.calls
            if c.path.endswith("custom/send") and c.ok and (openid is None or c.body.get("touser") == openid)
        ]

    def texts(self, openid: str | None = None) -> list[str]:
        return [m["text"]["content"] for m in self.sent(openid) if m.get("msgtype") == "text"]

    def paths(self) -> list[str]:
        return [c.path for c in self.calls]

    async def wait_for(self, predicate, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with self._changed:
            while not predicate():
                self.check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out; WeChat API calls so far: {self.paths()}")
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    pass

    async def wait_for_text(self, fragment: str, openid: str | None = None, timeout: float = 30.0) -> str:
        await self.wait_for(lambda: any(fragment in t for t in self.texts(openid)), timeout)
        return next(t for t in self.texts(openid) if fragment in t)


class WeChatSender:
    """Builds callbacks as WeChat's servers do and posts them to /wechat."""

    def __init__(
        self, callback_url: str, token: str = TOKEN, aes_key: str | None = None, appid: str = APPID, compatible: bool = False
    ):
        self.url = callback_url
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, appid) if aes_key else None
        self.compatible = compatible  # compatible mode: the plaintext fields and the Encrypt element
        self._ids = itertools.count(int(time.time()) * 1000)
        self.account = "gh_darkroom"
        # Every request as it went over the wire (query, body): what an eavesdropper or a reverse
        # proxy's access log (the query) would hold.
        self.requests: list[tuple[dict[str, str], bytes]] = []

    def signed_query(self, timestamp: str | None = None, nonce: str | None = None) -> dict[str, str]:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or "".join(random.choices(string.digits, k=9))
        signature = hashlib.sha1("".join(sorted([self.token, timestamp, nonce])).encode()).hexdigest()
        return {"signature": signature, "timestamp": timestamp, "nonce": nonce}

    def text_xml(self, openid: str, content: str, msg_id: int | None = None) -> str:
        return (
            f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id or next(self._ids)}</MsgId></xml>"
        )

    def image_xml(self, openid: str, media_id: str, msg_id: int | None = None) -> str:
        return (
            f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[image]]></MsgType>"
            f"<PicUrl><![CDATA[http://mmbiz.qpic.cn/never-fetched/{media_id}]]></PicUrl>"
            f"<MediaId><![CDATA[{media_id}]]></MediaId><MsgId>{msg_id or next(self._ids)}</MsgId></xml>"
        )

    def event_xml(self, openid: str, event: str, create_time: int | None = None) -> str:
        return (
            f"<xml><ToUserName><![CDATA[{self.account}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event></xml>"
        )

    async def post(self, xml: str, openid: str, query: dict | None = None, raw_body: bytes | None = None) -> tuple[int, str]:
        params = query or self.signed_query()
        params = {**params, "openid": openid}
        body = raw_body if raw_body is not None else xml.encode()
        if self.crypto is not None and raw_body is None:
            nonce = params["nonce"]
            encrypted = self.crypto.encrypt_message(xml, nonce, params["timestamp"])
            import xmltodict

            envelope = xmltodict.parse(encrypted)["xml"]
            if self.compatible:
                body = xml.replace("</xml>", f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>").encode()
            else:
                body = encrypted.encode()
            params.update({"encrypt_type": "aes", "msg_signature": envelope["MsgSignature"]})
        return await self.send_raw(params, body)

    async def send_raw(self, params: dict[str, str], body: bytes) -> tuple[int, str]:
        """POST exactly this query and body (a replay, when they were captured before)."""
        self.requests.append((dict(params), body))
        async with aiohttp.ClientSession() as session:
            async with session.post(self.url, params=params, data=body) as response:
                return response.status, await response.text()

    async def verify_url(self, echostr: str, query: dict | None = None) -> tuple[int, str]:
        params = {**(query or self.signed_query()), "echostr": echostr}
        async with aiohttp.ClientSession() as session:
            async with session.get(self.url, params=params) as response:
                return response.status, await response.text()
