"""One aiohttp server for everything that comes in over HTTP: `POST /telegram` (webhook mode),
`GET|POST /wechat` (WeChat callbacks), the on-device page under `/app/` (bot/web/page.py) and
`GET /healthz` (liveness), `GET /readyz` (can it take photos now) and `GET /metrics`."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os

from aiohttp import web

from bot.settings import StartupError

log = logging.getLogger("darkroom.http")
MAX_BODY = 1024 * 1024  # Telegram updates and WeChat callbacks are a few KB; photos come by reference
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def build_app(
    telegram=None, telegram_secret: str = "", wechat=None, health=None, webapp=None, metrics=None, ready=None
) -> web.Application:
    """``telegram`` has `process_webhook_update(dict)`; ``wechat`` has `handle(request)`;
    ``webapp`` has `add_routes(app)`; ``metrics()`` returns the Prometheus exposition and its
    content type."""
    app = web.Application(client_max_size=MAX_BODY)
    if webapp is not None:
        webapp.add_routes(app)

    async def healthz(request: web.Request) -> web.Response:
        body = {"status": "ok"}
        if health is not None:
            body.update(health())
        return web.json_response(body)

    app.router.add_get("/healthz", healthz)

    if ready is not None:

        async def readyz(request: web.Request) -> web.Response:
            # 200 only when a photo sent now can be styled; else 503 and a fixed reason code.
            ok, reason = await ready()
            return web.json_response({"status": "ok" if ok else "unavailable", "reason": reason}, status=200 if ok else 503)

        app.router.add_get("/readyz", readyz)

    if metrics is not None:

        async def prometheus(request: web.Request) -> web.Response:
            body, content_type = await metrics()
            return web.Response(body=body, headers={"Content-Type": content_type})

        app.router.add_get("/metrics", prometheus)

    if telegram is not None:

        async def telegram_update(request: web.Request) -> web.Response:
            given = request.headers.get(SECRET_HEADER, "")
            if not telegram_secret or not hmac.compare_digest(given.encode(), telegram_secret.encode()):
                log.warning("rejected a /telegram request without the right secret token")
                return web.Response(status=403, text="forbidden")
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                log.warning("rejected an oversized /telegram request")
                return web.Response(status=413, text="too large")
            try:
                data = json.loads(raw)
                if not isinstance(data, dict) or "update_id" not in data:
                    raise ValueError("not an update")
            except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's stack
                log.warning("rejected a malformed /telegram request")
                return web.Response(status=400, text="bad request")
            try:
                await telegram.process_webhook_update(data)
            except Exception as exc:
                log.warning("could not read a webhook update: %s", type(exc).__name__)
                return web.Response(status=400, text="bad request")
            return web.Response(text="ok")

        app.router.add_post("/telegram", telegram_update)

    if wechat is not None:
        app.router.add_get("/wechat", wechat.handle)
        app.router.add_post("/wechat", wechat.handle)

    return app


class HttpServer:
    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        # access_log=None: an access log would record WeChat's query string (OpenID, signatures).
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            raise StartupError(
                f"cannot listen on {self.host}:{self.port} ({reason}); is another program using it? "
                "Set DARKROOM_HTTP_HOST / DARKROOM_HTTP_PORT"
            ) from None
        if self.port == 0:  # tests ask for any free port
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
        log.info("HTTP server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
