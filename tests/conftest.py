"""Shared fixtures: test portraits from installed wheels, one verified engine, the fake Bot API,
and a running Darkroom wired to it."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from bot.app import Darkroom
from bot.jobs import FairQueue
from bot.router import Router
from bot.settings import from_environment
from bot.storage.store import Storage
from handlers.context import Context, ConversationSettings
from handlers.memory import Memory
from inference import AsyncEngine, Engine, EngineConfig
from tests.fakes.platform import FakePlatform, Harness
from tests.fakes.telegram_api import FakeTelegram, User
from tests.run_plan import pytest_collection_modifyitems, pytest_runtest_protocol  # noqa: F401 - `slow`, and xdist
from tests.services.redis_plugin import pytest_runtest_setup, redis_url  # noqa: F401 - the `redis` marker's fixture and rule

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"
SECRET = "k" * 64
ALICE = User(111111111, "Alice", "alice_private", "en")
BOB = User(222222222, "Bob", "bob_the_builder", "zh-hans")
CAROL = User(333333333, "Carol", "carol_admin", "en")
GROUP = -1001234567890


def portrait_path(name: str = "grace") -> Path:
    if name == "grace":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    import skimage

    return Path(skimage.__file__).parent / "data" / "astronaut.png"


def jpeg_bytes(rgb: np.ndarray, quality: int = 92, **save) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=quality, **save)
    return out.getvalue()


def pytest_configure(config):
    """The run's memory is bounded and reported (tests/memory_guard.py)."""
    from tests.memory_guard import MemoryGuard, limit_from_environment

    config.pluginmanager.register(MemoryGuard(limit_from_environment()), "darkroom-memory-guard")


@pytest.fixture(autouse=True)
def network_guard():
    """No test may reach beyond loopback: the bot's only network is the (fake) platform API."""
    from tests.network_guard import NetworkGuard

    guard = NetworkGuard().install()
    try:
        yield guard
    finally:
        guard.uninstall()
    assert guard.refused == [], f"unexpected network use: {guard.refused}"


@pytest.fixture(autouse=True)
def keep_the_test_process_dumpable(monkeypatch):
    """`stylize` and `sheet` called in-process would switch core dumps off for the rest of the
    test run, for good, so that later tests depend on the order they run in. Hardening is proven
    in fresh processes instead (tests/test_hardening.py, tests/proofs/test_os_level.py)."""
    from bot.safeguards import core_dumps as hardening

    monkeypatch.setattr(hardening, "harden_process", lambda: None)


# -- PostgreSQL (tests marked `postgres`) -----------------------------------------------------------

POSTGRES_URL = os.environ.get("DARKROOM_TEST_POSTGRES_URL", "")


@pytest.fixture
async def postgres_url(request):
    """A fresh, empty PostgreSQL database for this test (dropped afterwards) on the server at
    DARKROOM_TEST_POSTGRES_URL (tests/services/postgres.sh start). Without one the test is
    skipped, except in CI (CI=true), where it fails: CI must never skip these silently."""
    assert request.node.get_closest_marker("postgres"), "a test using postgres_url must be marked postgres"
    if not POSTGRES_URL:
        reason = "DARKROOM_TEST_POSTGRES_URL is not set (start a server: eval \"$(tests/services/postgres.sh start)\")"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    import asyncpg

    name = f"darkroom_test_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield urlsplit(POSTGRES_URL)._replace(path=f"/{name}").geturl()
    finally:
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()


ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def storage_location(request, tmp_path: Path) -> tuple[str, Path | str]:
    """For a fixture parametrized with ENGINES: (engine, a SQLite path or a fresh database's URL)."""
    if request.param == "sqlite":
        return "sqlite", tmp_path / "data" / "darkroom.sqlite3"
    return "postgresql", request.getfixturevalue("postgres_url")


async def open_storage(location: tuple[str, Path | str], secret: bytes) -> Storage:
    engine, place = location
    if engine == "sqlite":
        return await Storage.open(place, secret)
    return await Storage.open_postgres(place, secret)


@pytest.fixture(scope="session")
def grace_rgb() -> np.ndarray:
    return np.asarray(Image.open(portrait_path("grace")).convert("RGB"))


@pytest.fixture(scope="session")
def astronaut_rgb() -> np.ndarray:
    return np.asarray(Image.open(portrait_path("astronaut")).convert("RGB"))


@pytest.fixture(scope="session")
def small_portrait(grace_rgb) -> bytes:
    """A 256x300 JPEG portrait: quick to style, still has a detectable face."""
    image = Image.fromarray(grace_rgb).resize((256, 300), Image.Resampling.LANCZOS)
    return jpeg_bytes(np.asarray(image))


@pytest.fixture(scope="session")
def engine() -> Engine:
    """The engine as `darkroom run` would build it here (its backend chosen for this machine)."""
    engine = Engine(EngineConfig())
    engine.verify()
    return engine


@pytest.fixture(scope="session")
def reference_engine() -> Engine:
    """onnxruntime fp32: the reference every other backend is checked against."""
    engine = Engine(EngineConfig(backend="onnxruntime", precision="fp32"))
    engine.verify()
    return engine


@pytest.fixture
async def fake_telegram():
    fake = await FakeTelegram(TOKEN).start()
    try:
        yield fake
    finally:
        await fake.stop()


def bot_environment(fake: FakeTelegram, data_dir: Path, **overrides: str) -> dict[str, str]:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": fake.url,
        "TELEGRAM_MODE": "polling",
        "DARKROOM_DATA_DIR": str(data_dir),
        "DARKROOM_SECRET": SECRET,
        "DARKROOM_HTTP_HOST": "127.0.0.1",
        "DARKROOM_HTTP_PORT": "0",
        # The picker alone (what most flows test); tests/e2e/test_previews.py turns the sheet on.
        "DARKROOM_PREVIEW_SHEET": "0",
    }
    env.update(overrides)
    return env


@contextlib.asynccontextmanager
async def running_bot(fake: FakeTelegram, data_dir: Path, engine: Engine, **overrides: str):
    settings = from_environment(bot_environment(fake, data_dir, **overrides), dotenv=None)
    darkroom = Darkroom(settings, engine=engine)
    await darkroom.start()
    try:
        yield darkroom
    finally:
        await darkroom.stop(grace=5.0)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def captured_logs():
    """Everything logged at DEBUG, both as raw records and as the redacted text operators see."""
    from bot.safeguards import logs

    stream = io.StringIO()
    handler = logs.configure("DEBUG", [TOKEN, SECRET], stream=stream)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    keep = Keep(level=logging.DEBUG)
    root = logging.getLogger()
    root.handlers.insert(0, keep)  # before the redactor, so it sees records as they were made
    try:
        yield stream, records
    finally:
        root.removeHandler(keep)
        root.removeHandler(handler)



@pytest.fixture(scope="session")
def two_faces(grace_rgb, astronaut_rgb) -> bytes:
    """Two people side by side (both faces are found by the detector)."""
    canvas = Image.new("RGB", (650, 350), "white")
    canvas.paste(Image.fromarray(grace_rgb).resize((300, 350)), (0, 0))
    canvas.paste(Image.fromarray(astronaut_rgb).resize((350, 350)), (300, 0))
    return jpeg_bytes(np.asarray(canvas))


# -- handler harness (neutral events, real storage, queue and engine; fake platform) -------------


@pytest.fixture
def conversation_settings() -> ConversationSettings:
    # The picker alone, as the conversation tests were written for it; the preview sheet has
    # its own tests (tests/handlers/test_previews.py), which turn it on.
    return ConversationSettings(preview_sheet=False)


@pytest.fixture
def harness_storage(tmp_path) -> tuple[str, Path | str]:
    """Where the harness keeps its rows: SQLite here; tests/handlers/conftest.py runs the
    conversation tests on both engines."""
    return "sqlite", tmp_path / "db.sqlite3"


@pytest.fixture
async def harness(harness_storage, engine, conversation_settings):
    storage = await open_storage(harness_storage, b"s" * 32)
    queue = FairQueue(workers=2, max_waiting=10, per_person=5, rate_per_hour=50)
    platform = FakePlatform()
    async_engine = AsyncEngine(engine)
    ctx = Context(
        platform=platform,
        store=storage,
        queue=queue,
        engine=async_engine,
        catalogue=engine.catalogue,
        memory=Memory(),
        settings=conversation_settings,
    )
    router = Router(ctx)
    queue.start()
    try:
        yield Harness(router.context(platform), router, platform, storage, queue)
    finally:
        await queue.stop(grace=2.0)
        async_engine.close()
        await storage.close()


@pytest.fixture
async def wechat_api():
    from tests.fakes.wechat_api import FakeWeChatApi

    api = await FakeWeChatApi().start()
    try:
        yield api
    finally:
        await api.stop()
