"""Wiring: settings → storage, engine, queue, router, adapters, HTTP server. One visible place."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import stat
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from bot.engine_config import engine_config  # noqa: F401  (re-exported: the bot and its tests build the engine with it)
from bot.jobs import FairQueue
from bot.router import Router
from bot.safeguards import heap
from bot.safeguards.logs import REDACTOR
from bot.safeguards.pseudonym import Pseudonymizer, load_or_create_secret
from bot.scale.state import SharedState
from bot.scale.state import connect as connect_shared_state
from bot.settings import Settings, StartupError
from bot.storage.store import Storage
from bot.web.page import WebApp
from bot.web.server import HttpServer, build_app
from handlers.context import Context, ConversationSettings
from handlers.events import Address, Person
from handlers.memory import Memory
from handlers.page_results import send_page_result
from handlers.pipeline import LocalStyler
from handlers.replies import DeleteMessage, SendText
from handlers.texts import t
from inference import AsyncEngine, Engine, __version__

if TYPE_CHECKING:  # loaded at start-up only when configured (heavy, or an extra)
    from bot.platforms.telegram.client import TelegramClient
    from bot.platforms.telegram.receive import TelegramReceiver
    from bot.platforms.wechat.callback import WeChatCallback
    from bot.platforms.wechat.client import WeChatClient
    from bot.scale.metrics import FrontMetrics
    from handlers.ports import Platform, Styler

log = logging.getLogger("darkroom")
SHUTDOWN_NOTICE_TIME = 2.5  # seconds after the grace period to tell people their photo was not done
READY_TIMEOUT = 2.0  # seconds each /readyz check may take


def software_version() -> str:
    """The package version, and the git commit when running from a checkout (read from .git,
    no subprocess)."""
    root = Path(__file__).resolve().parent.parent / ".git"
    try:
        head = (root / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            path = root / ref
            if path.exists():
                head = path.read_text().strip()
            else:
                packed = (root / "packed-refs").read_text().splitlines()
                head = next(line.split()[0] for line in packed if line.endswith(" " + ref))
        return f"{__version__} (commit {head[:12]})"
    except (OSError, StopIteration):
        return __version__


def conversation_settings(settings: Settings, engine: Engine) -> ConversationSettings:
    default = settings.default_style or None
    if default is not None:
        default = engine.catalogue.get(default).key  # an unknown name stops start-up, clearly
    return ConversationSettings(
        min_age=settings.min_age,
        input_ttl=settings.input_ttl,
        reply_ttl=settings.reply_ttl,
        delete_selfie=settings.delete_selfie,
        operator=settings.operator,
        default_style=default,
        max_input_bytes=settings.max_input_bytes,
        version=software_version(),
        webapp_url=settings.webapp_url,
        marked_platforms=frozenset(["wechat"] if settings.wechat_visible_label else []),
        file_ttl=settings.file_ttl,
        preview_sheet=settings.preview_sheet,
    )


def prepare_data_dir(settings: Settings) -> None:
    """Create the data directory private (0700, whatever the umask), and refuse to start when it
    cannot be written or when the key or the database can be read by other users."""
    data_dir = settings.data_dir
    try:
        if not data_dir.is_dir():
            data_dir.mkdir(parents=True, mode=0o700)
            os.chmod(data_dir, 0o700)  # parents=True and the umask must not decide this
        if not os.access(data_dir, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable by this user")
    except OSError as exc:
        raise StartupError(
            f"the data directory {data_dir} cannot be created or written ({exc.strerror}); check DARKROOM_DATA_DIR and its permissions"
        ) from None
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if mode & 0o077:
        log.warning("the data directory %s is open to other users (mode %o); run chmod 700 on it", data_dir, mode)
    database_files = [settings.database.with_name(settings.database.name + suffix) for suffix in ("-wal", "-shm", "-journal")]
    for path in (settings.secret_file, settings.database, *database_files):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            raise StartupError(f"{path} can be read or changed by other users (mode {mode:o}); run chmod 600 {path}")


async def _open_storage(settings: Settings) -> Storage:
    if settings.database_url:
        return await Storage.open_postgres(settings.database_url, settings.secret)
    try:
        return await Storage.open(settings.database, settings.secret)
    except (OSError, sqlite3.Error) as exc:
        raise StartupError(
            f"cannot open the database {settings.database} ({exc}); `darkroom audit` shows what the data directory holds"
        ) from None


@dataclass
class Darkroom:
    settings: Settings
    engine: Engine | None = None  # tests may pass a prepared engine to save start-up time
    storage: Storage | None = field(default=None, init=False)
    router: Router | None = field(default=None, init=False)
    queue: FairQueue | None = field(default=None, init=False)
    telegram: TelegramClient | None = field(default=None, init=False)  # sends, fetches: the Platform
    telegram_receiver: TelegramReceiver | None = field(default=None, init=False)  # updates → events
    wechat: WeChatClient | None = field(default=None, init=False)  # sends, fetches: the Platform
    wechat_callback: WeChatCallback | None = field(default=None, init=False)  # /wechat callbacks → events
    http: HttpServer | None = field(default=None, init=False)
    async_engine: AsyncEngine | None = field(default=None, init=False)
    shared: SharedState | None = field(default=None, init=False)  # Redis, when DARKROOM_BROKER_URL is set
    styler: Styler | None = field(default=None, init=False)  # runs the styling pipeline
    metrics: FrontMetrics | None = field(default=None, init=False)
    janitor_interval: float = 5.0  # how often due reply deletions are looked for
    page_url: str = field(default="", init=False)  # where the on-device page is served, once started
    _pseudonymize: Pseudonymizer | None = field(default=None, init=False)
    _janitor: asyncio.Task | None = field(default=None, init=False)
    _capacity: asyncio.Task | None = field(default=None, init=False)

    async def start(self) -> None:
        """Start in the order a photo's journey needs: data directory and secret, the verified
        engine, storage, the styler and the fair queue, the router, the platforms, the HTTP
        server; then tell people about jobs a crash lost."""
        settings = self.settings
        prepare_data_dir(settings)
        if not settings.secret:
            settings = replace(settings, secret=load_or_create_secret(settings.secret_file))
            self.settings = settings
        REDACTOR.add(*settings.secrets())
        if self.engine is None:
            self.engine = Engine(engine_config(settings))
            # Refuses to start on a tampered model. A front whose photos are styled by workers
            # builds no session and chooses no backend: that is the workers' (about 180 MB less).
            # Nor does `darkroom run` with no platform: the page styles in the browser, so the
            # files are checked and no runtime is loaded (the address is printed in seconds).
            await asyncio.to_thread(self.engine.verify, not (settings.scaled_out or settings.local_only))
        engine = self.engine
        self.storage = storage = await _open_storage(settings)
        self.async_engine = async_engine = AsyncEngine(engine)
        self.styler, slots = self._styler(engine, async_engine)
        self.queue = FairQueue(
            workers=slots,
            max_waiting=settings.queue_limit,
            per_person=settings.per_person_pending,
            rate_per_hour=settings.rate_limit_per_hour,
        )
        base = Context(
            platform=None,  # type: ignore[arg-type]  # the router gives each platform its own context
            store=storage,
            queue=self.queue,
            engine=self.async_engine,
            catalogue=engine.catalogue,
            memory=Memory(),
            settings=conversation_settings(settings, engine),
            styler=self.styler,
        )
        self.router = router = Router(base)
        self._pseudonymize = pseudonymize = Pseudonymizer(settings.secret)
        # Redis down at start (a routine restart, or started in the wrong order): wait for it.
        self.shared = await connect_shared_state(settings, pseudonymize, wait=True)
        self.queue.start()
        router.start()
        # Before any update can arrive, and before the platforms' clients exist (a frozen object
        # is never collected: one holding a photo would keep it), but after their libraries
        # are imported: later per-job collections skip all of it (with PTB and httpx imported
        # after the freeze, each job's collection walked ~37,000 objects, 13 ms of CPU).
        self._import_platforms()
        heap.freeze_start_up_objects()
        await self._start_platforms(router, storage, pseudonymize)
        if settings.needs_http:
            await self._start_http(engine)
        if self.telegram_receiver is not None:
            await self.telegram_receiver.start()
        await self._tell_people_about_lost_jobs()
        self._janitor = asyncio.create_task(self._delete_due_replies(), name="darkroom-reply-janitor")
        if settings.scaled_out:
            self._capacity = asyncio.create_task(self._follow_capacity(), name="darkroom-capacity")
        log.info("Darkroom %s started (%d styles)", __version__, len(engine.catalogue.styles))
        log.debug(
            "telegram=%s (%s), wechat=%s, input_ttl=%ds, reply_ttl=%ds, max_side=%d, queue_limit=%d",
            settings.telegram_enabled, settings.telegram_mode, settings.wechat_enabled, settings.input_ttl,
            settings.reply_ttl, settings.max_side, settings.queue_limit,
        )

    def _styler(self, engine: Engine, async_engine: AsyncEngine) -> tuple[Styler, int]:
        """What styles the photos, and how many jobs may be out at once."""
        settings = self.settings
        styler: Styler
        if settings.scaled_out:
            from bot.scale.front import RemoteStyler

            styler = RemoteStyler(settings)  # photos are styled by `darkroom worker`s
            # What the workers can run, plus one waiting in the broker so that no worker idles
            # while the front does a job's bookkeeping (as in-process: one uploads while one
            # styles). Positions stay true within that one.
            slots = settings.worker_slots + 1
        else:
            styler = LocalStyler(async_engine)
            slots = engine.config.concurrency + 1  # one downloads/uploads while one styles
        if settings.metrics:  # prometheus-client comes with the `scale` extra
            from bot.scale.metrics import FrontMetrics, MeteredStyler

            self.metrics = FrontMetrics()
            styler = MeteredStyler(styler, self.metrics)
        return styler, slots

    def _import_platforms(self) -> None:
        """The enabled platforms' modules, with their libraries (and the parts httpx imports at
        its first request): code and module-level data only, no client, connection or update
        (see `_start_platforms`)."""
        if self.settings.telegram_enabled:
            import bot.platforms.telegram.client  # noqa: F401, PLC0415
            import bot.platforms.telegram.receive  # noqa: F401, PLC0415
        if self.settings.wechat_enabled:
            import bot.platforms.wechat.callback  # noqa: F401, PLC0415
            import bot.platforms.wechat.client  # noqa: F401, PLC0415

    async def _start_platforms(self, router: Router, storage: Storage, pseudonymize: Pseudonymizer) -> None:
        """Each platform's client (what handlers answer through) and its receiver (what turns
        its updates into events for the router)."""
        settings = self.settings
        if settings.telegram_enabled:
            from bot.platforms.telegram.client import TelegramClient
            from bot.platforms.telegram.receive import TelegramReceiver

            limiter = self.shared.telegram_limiter() if self.shared else None
            self.telegram = TelegramClient(settings, rate_limiter=limiter)
            self.telegram_receiver = TelegramReceiver(settings, self.telegram, pseudonymize, router.enqueue)
        if settings.wechat_enabled:
            from bot.platforms.wechat.callback import WeChatCallback
            from bot.platforms.wechat.client import WeChatClient

            tokens = self.shared.wechat_tokens() if self.shared else None
            self.wechat = WeChatClient(settings, pseudonymize, tokens=tokens)
            await self.wechat.start()
            self.wechat_callback = WeChatCallback(settings, self.wechat, pseudonymize, router.enqueue, storage)

    async def _start_http(self, engine: Engine) -> None:
        settings = self.settings
        webapp = None
        if settings.serves_webapp:
            webapp = WebApp(
                engine.catalogue,
                engine.config.software,
                bot_token=settings.telegram_bot_token,
                send_styled=self._send_styled if self.telegram is not None else None,
                provider=settings.provider_name,
            )
        app = build_app(
            telegram=self.telegram_receiver if settings.telegram_mode == "webhook" else None,
            telegram_secret=settings.telegram_webhook_secret,
            wechat=self.wechat_callback,
            health=self.health,
            ready=self.ready,
            webapp=webapp,
            metrics=self._metrics if settings.metrics else None,
        )
        self.http = HttpServer(app, settings.http_host, settings.http_port)
        await self.http.start()
        if webapp is not None:
            host = settings.http_host if settings.http_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
            self.page_url = settings.webapp_url or f"http://{host}:{self.http.port}/app/"

    async def _send_styled(self, user_id: int, jpeg: bytes, language: str) -> None:
        """The on-device page's opt-in: deliver a picture styled on the person's device to their
        chat with the bot, under the rules of a chat result (handlers/page_results.py)."""
        # Offered to the page only when Telegram is configured, so all of these exist.
        assert self.telegram is not None and self.router is not None and self._pseudonymize is not None
        address = Address(self.telegram.name, str(user_id))
        person = Person(pseudonym=self._pseudonymize(self.telegram.name, "user", user_id), language=language, address=address)
        await send_page_result(self.router.context(self.telegram), person, address, jpeg)

    def platforms(self) -> dict[str, Platform]:
        return {p.name: p for p in (self.telegram, self.wechat) if p is not None}

    def _started(self) -> tuple[Storage, Router]:
        assert self.storage is not None and self.router is not None, "used before start()"
        return self.storage, self.router

    async def _tell_people_about_lost_jobs(self) -> None:
        """After a crash: tell each person whose photo was being styled to send it again. The
        photo itself is gone (it only ever lived in memory); only the sealed address was kept."""
        storage, router = self._started()
        platforms = self.platforms()
        for row, address, language in await storage.lost_jobs():
            platform = platforms.get(address.platform)
            if platform is not None:
                ctx = router.context(platform)
                await ctx.send(address, SendText(t("photo.lost", language)))
            await storage.job_finished(row)
            log.info("told a person that their photo was lost in a restart")

    async def _delete_due_replies(self) -> None:
        """DARKROOM_REPLY_TTL: delete the bot's styled-photo messages when their time comes."""
        storage, router = self._started()
        platforms = self.platforms()
        while True:
            try:
                for row, message in await storage.due_replies(int(time.time())):
                    platform = platforms.get(message.chat.platform)
                    if platform is not None:
                        await router.context(platform).send(message.chat, DeleteMessage(message))
                    await storage.forget_reply(row)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("deleting due replies failed: %s", type(exc).__name__)
            await asyncio.sleep(self.janitor_interval)

    async def _follow_capacity(self, every: float = 5.0) -> None:
        """Scaled out: as many jobs out at once as the workers' heartbeats show styling
        processes (+ 1 waiting in the broker), so a worker added anywhere adds capacity."""
        from bot.scale.protocol import HEARTBEAT

        assert self.queue is not None and self.styler is not None
        while True:
            await asyncio.sleep(min(every, HEARTBEAT))
            try:
                processes, _ = await self.styler.capacity()  # type: ignore[attr-defined]
            except Exception:
                continue  # Redis is away; the front's own warnings say so
            if processes and processes + 1 != self.queue.workers:
                self.queue.resize(processes + 1)
                log.info("workers: %d styling process(es); up to %d jobs out at once", processes, processes + 1)

    async def ready(self) -> tuple[bool, str]:
        """GET /readyz: the database and Redis answer; in-process, the engine is loaded (unless
        only the page is served); scaled out, at least one live worker is free. A fixed reason code, no personal data."""
        if self.storage is None or self.queue is None or self.queue.stopping:
            return False, "starting"
        try:
            await asyncio.wait_for(self.storage.ping(), READY_TIMEOUT)
        except Exception:
            return False, "database_unavailable"
        if self.shared is not None:
            try:
                await asyncio.wait_for(self.shared.redis.ping(), READY_TIMEOUT)
            except Exception:
                return False, "redis_unavailable"
        if self.settings.scaled_out:
            try:
                processes, free = await asyncio.wait_for(self.styler.capacity(), READY_TIMEOUT)  # type: ignore[union-attr]
            except Exception:
                return False, "redis_unavailable"
            if not processes:
                return False, "no_worker"
            if not free:
                return False, "no_free_worker"
        elif not self.settings.local_only and (self.engine is None or self.engine.choice is None):
            # With no platform the page styles in the browser: no runtime is loaded, none needed.
            return False, "engine_not_loaded"
        return True, "ok"

    async def _metrics(self) -> tuple[bytes, str]:
        assert self.metrics is not None  # served only with DARKROOM_METRICS, which creates them
        return await self.metrics.render(self.queue, self.styler)

    def health(self) -> dict:
        return {
            "version": __version__,
            "queue_waiting": self.queue.waiting if self.queue else 0,
            "queue_running": self.queue.running if self.queue else 0,
            "messages_waiting": self.router.backlog if self.router else 0,
            "messages_dropped": self.router.dropped if self.router else 0,
            "engine": self.engine.choice.as_dict() if self.engine is not None and self.engine.choice else None,
        }

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking new work, give running jobs and the messages being answered ``grace``
        seconds, tell the people whose photos were not done, then close the platforms and the
        database cleanly. Nothing waits past ``grace`` + a few seconds: a chat in Telegram's
        flood wait makes its own replies fail, not the shutdown."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + grace + SHUTDOWN_NOTICE_TIME
        if self.telegram is not None:
            self.telegram.wind_down(give_up_at)
        for task in (self._janitor, self._capacity):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        try:
            await asyncio.wait_for(self._stop_work(loop.time() + grace), timeout=grace + SHUTDOWN_NOTICE_TIME + 1.5)
        except TimeoutError:
            log.warning("shutdown: some replies were still waiting after %.0fs; closing anyway", grace)
        finally:
            if self.async_engine is not None:
                self.async_engine.close()
            if self.storage is not None:
                await self.storage.close()
            if self.shared is not None:
                await self.shared.close()
                self.shared = None
            heap.thaw_start_up_objects()
        log.info("Darkroom stopped")

    async def _stop_work(self, grace_ends: float) -> None:
        if self.telegram_receiver is not None:
            await self.telegram_receiver.stop_receiving()
        if self.http is not None:
            await self.http.stop()
            self.http = None
        # Jobs and the messages being answered finish side by side, within what is left of the
        # grace period; both still use the platforms to reply or to apologise.
        grace = max(0.0, grace_ends - asyncio.get_running_loop().time())
        closing: list[Awaitable[object]] = []
        if self.router is not None:
            closing.append(self.router.close(timeout=grace))
        if self.queue is not None:
            closing.append(self.queue.stop(grace, notice_timeout=SHUTDOWN_NOTICE_TIME))
        await asyncio.gather(*closing)
        if self.router is not None:
            await self.router.stop()
        if self.styler is not None and hasattr(self.styler, "close"):
            await self.styler.close()
        if self.telegram_receiver is not None:
            await self.telegram_receiver.close()
        if self.telegram is not None:
            await self.telegram.close()
        if self.wechat_callback is not None:
            await self.wechat_callback.stop()
        if self.wechat is not None:
            await self.wechat.stop()

    async def run_forever(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.start()
        except BaseException:
            await self.stop(grace=1.0)  # release what did start (server socket, database)
            raise
        if self.settings.local_only:
            print(f"Darkroom on-device page: {self.page_url} (no chat platform configured; Ctrl+C stops)", flush=True)
        try:
            await stop.wait()
        finally:
            await self.stop()
