"""Every setting, declared once and read from the environment (and `.env`) in this one place.

Each field of `Settings` is declared with `setting(...)`: its key, default, kind (how the text
is read and written back), whether it is a secret, and one line of doc. That declaration is the
only home of these facts: `from_environment` reads the keys through it, and `python -m
bot.settings --write` generates `.env.example` and the README's settings table from it (a test
fails when either differs). Nothing else in Darkroom reads `os.environ`.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import textwrap
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Generic, Mapping, TypeVar
from urllib.parse import unquote, urlsplit

from handlers.context import ConversationSettings

T = TypeVar("T")

MAX_INPUT_TTL = 600
MAX_REPLY_TTL = 47 * 3600  # Telegram lets bots delete their own messages for 48 hours
MB = 1024 * 1024
MEGAPIXEL = 1_000_000
# The conversation's defaults are the defaults of the settings it is built from (bot/app.py):
# declared there once, read here.
CHAT = ConversationSettings()


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the key, never its value."""


class StartupError(RuntimeError):
    """The bot cannot start (a platform refuses us or cannot be reached): a clear message for the
    operator, never a traceback, never a secret."""


@dataclass(frozen=True)
class Kind(Generic[T]):
    """How a setting's text becomes its value, and its value text again (for `.env.example`)."""

    # (text, key) -> value; None for "not given" (blank), so that the default applies. Errors
    # are SettingsError naming the key, never the value.
    parse: Callable[[str, str], T | None]
    write: Callable[[T], str] = str


@dataclass(frozen=True)
class Group:
    """A heading of `.env.example`, with what holds for every setting under it."""

    title: str
    note: str = ""


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: a Settings field's key, how its text is read, and its doc."""

    group: Group
    env: str  # the environment key
    kind: Kind[Any]
    doc: str  # one line: the README table's "Meaning", and the start of the .env.example comment
    secret: bool = False  # hidden from repr, redacted from every log line (Settings.secrets)
    note: str = ""  # more for the .env.example comment
    blank_means: str = ""  # when left empty the value is worked out at start-up: what it becomes
    example: str = ""  # shown commented out in .env.example, in place of the default
    # Filled in from the Settings field this declares (see SETTINGS):
    name: str = ""
    default: Any = None


def setting(
    group: Group,
    env: str,
    default: T,
    kind: Kind[T],
    doc: str,
    *,
    secret: bool = False,
    note: str = "",
    blank_means: str = "",
    example: str = "",
) -> T:
    """A field of Settings, declared with everything the environment, `.env.example` and the
    README need to know about it (a dataclass field, so type checkers see the field's type)."""
    spec = Setting(group, env, kind, doc, secret, note, blank_means, example)
    return field(default=default, repr=not secret, metadata={"setting": spec})


# ---- Kinds: how text becomes a value ---------------------------------------------------------


def _text(raw: str, key: str) -> str:
    return raw.strip()


def _whole(low: int, high: int, unit: int = 1) -> Kind[int]:
    """A whole number of ``unit``s between ``low`` and ``high``; blank: the default."""

    def parse(raw: str, key: str) -> int | None:
        raw = raw.strip()
        if not raw:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{key} must be a whole number") from None
        if not low <= value <= high:
            raise SettingsError(f"{key} must be between {low} and {high}")
        return value * unit

    return Kind(parse, lambda value: str(value // unit))


def _flag(raw: str, key: str) -> bool | None:
    raw = raw.strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key} must be true or false")


def _path(raw: str, key: str) -> Path:
    return Path(raw).expanduser()


def _optional_path(raw: str, key: str) -> Path | None:
    return Path(raw).expanduser() if raw else None


def _write_path(path: Path | None) -> str:
    if path is None:
        return ""
    return str(path) if path.is_absolute() or str(path).startswith(".") else f"./{path}"  # reads as a path


def _mode(raw: str, key: str) -> str:
    value = raw.strip().lower()
    if value not in ("polling", "webhook"):
        raise SettingsError(f"{key} must be 'polling' or 'webhook'")
    return value


def _aes_key(raw: str, key: str) -> str:
    value = raw.strip()
    if value and len(value) != 43:
        raise SettingsError(f"{key} must be the 43-character EncodingAESKey from the Official Account console")
    return value


def _encryption(raw: str, key: str) -> str | None:
    value = raw.strip().lower()
    if not value:
        return None  # from_environment: "safe" with an AES key, else "plain"
    if value not in ("safe", "compatible", "plain"):
        raise SettingsError(f"{key} must be 'safe', 'compatible' or 'plain'")
    return value


def _log_level(raw: str, key: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{key} must be DEBUG, INFO, WARNING or ERROR")
    return value


TEXT: Kind[str] = Kind(_text)
FLAG: Kind[bool] = Kind(_flag, lambda value: "true" if value else "false")
PATH: Kind[Path] = Kind(_path, _write_path)
OPTIONAL_PATH: Kind[Path | None] = Kind(_optional_path, _write_path)


def _url(raw: str, key: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{key} must start with http:// or https://")
    return value


def _webapp_url(raw: str, key: str) -> str:
    value = raw.strip()
    if not value:
        return ""
    if not value.startswith("https://"):
        raise SettingsError(f"{key} must be the public https:// URL of /app/ (Telegram opens only https pages)")
    return value if value.endswith("/") else value + "/"


def _database_url(raw: str, key: str) -> str:
    """A PostgreSQL URL (postgresql://user:password@host:port/database), or "" for SQLite. The
    error names the key, never the value: it holds a password."""
    raw = raw.strip()
    if not raw:
        return ""
    try:
        parts = urlsplit(raw)
        parts.port  # raises ValueError for a malformed port
    except ValueError:
        raise SettingsError(f"{key} is not a valid URL") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError(f"{key} must start with postgresql://")
    if not parts.path.strip("/"):
        raise SettingsError(f"{key} must name a database: postgresql://user:password@host:5432/darkroom")
    return raw


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
BROKER_SCHEMES = REDIS_SCHEMES + ("amqp://", "amqps://", "pyamqp://")  # what Celery's brokers take


def _url_setting(value: str, key: str, schemes: tuple[str, ...]) -> str:
    """A broker or Redis URL (it may hold a password: errors name the key, never the value)."""
    value = value.strip()
    if not value:
        return ""
    if not value.startswith(schemes):
        raise SettingsError(f"{key} must be a {', '.join(s[:-3] for s in schemes)} URL")
    try:
        urlsplit(value).port  # a malformed port raises here, not deep inside the client
    except ValueError:
        raise SettingsError(f"{key} has a malformed port") from None
    return value


def _broker_url(raw: str, key: str) -> str:
    return _url_setting(raw, key, BROKER_SCHEMES)


def _redis_url(raw: str, key: str) -> str:
    return _url_setting(raw, key, REDIS_SCHEMES)


def _engine(raw: str, key: str) -> str:
    value = raw.strip().lower()
    if value in ("", "auto"):
        return ""
    if value not in ("onnxruntime", "openvino"):
        raise SettingsError(f"{key} must be onnxruntime or openvino (or empty to choose at start-up)")
    return value


def _precision(raw: str, key: str) -> str:
    value = raw.strip().lower()
    if value in ("", "auto"):
        return ""
    if value == "int8":
        raise SettingsError(
            f"{key}=int8 is not offered: it did not keep every style within 40 dB of fp32; "
            "use fp32 or bf16 (or leave it empty)"
        )
    if value not in ("fp32", "bf16"):
        raise SettingsError(f"{key} must be fp32 or bf16 (or empty to choose at start-up)")
    return value


def _secret(raw: str, key: str) -> bytes:
    raw = raw.strip()
    if not raw:
        return b""
    if len(raw) < 32:
        raise SettingsError(f"{key} must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    return raw.encode()


# ---- The settings ----------------------------------------------------------------------------

TELEGRAM = Group("Telegram")
WECHAT = Group("WeChat Official Account (service account)")
HTTP = Group("HTTP server (webhook, /wechat, /app/ and /healthz)")
PRIVACY = Group("Data and privacy")
STYLING = Group("Styling")
LOAD = Group("Load")
SCALE = Group(
    "Scaling out",
    "Several processes or machines (README \"Scaling out\"; pip install -e '.[scale]'). With no broker "
    "set, photos are styled inside `darkroom run`.",
)
OPERATIONS = Group("Operations")

@dataclass(frozen=True)
class Settings:
    """Every setting. Each field is declared with `setting`, under its group, in the order of
    `.env.example`; `from_environment` fills them in."""

    telegram_bot_token: str = setting(TELEGRAM, "TELEGRAM_BOT_TOKEN", "", TEXT, "bot token from @BotFather", secret=True)
    telegram_api_url: str = setting(
        TELEGRAM,
        "TELEGRAM_API_URL",
        "https://api.telegram.org",
        Kind(_url),
        "Bot API base; the bot calls `<url>/bot<token>/<method>` and downloads from `<url>/file/bot<token>/<path>`",
        note="Point it at your own Bot API server if you run one.",
    )
    telegram_mode: str = setting(
        TELEGRAM, "TELEGRAM_MODE", "polling", Kind(_mode), "`polling` (no public URL needed) or `webhook`"
    )
    telegram_webhook_url: str = setting(
        TELEGRAM,
        "TELEGRAM_WEBHOOK_URL",
        "",
        TEXT,
        "public URL Telegram posts to (webhook mode); must reach `POST /telegram`",
        note="That is /telegram on DARKROOM_HTTP_HOST:DARKROOM_HTTP_PORT, usually through a reverse proxy.",
    )
    telegram_webhook_secret: str = setting(
        TELEGRAM,
        "TELEGRAM_WEBHOOK_SECRET",
        "",
        TEXT,
        "secret token checked on every webhook request (403 otherwise)",
        secret=True,
        note="Telegram sends it in X-Telegram-Bot-Api-Secret-Token.",
        blank_means="generated at each start",
    )
    wechat_token: str = setting(
        WECHAT, "WECHAT_TOKEN", "", TEXT, "the Token entered in the Official Account console (signatures)", secret=True
    )
    wechat_appid: str = setting(WECHAT, "WECHAT_APPID", "", TEXT, "AppID of the account (for the access token)", secret=True)
    wechat_secret: str = setting(
        WECHAT, "WECHAT_SECRET", "", TEXT, "AppSecret of the account (for the access token)", secret=True
    )
    wechat_aes_key: str = setting(
        WECHAT,
        "WECHAT_AES_KEY",
        "",
        Kind(_aes_key),
        "EncodingAESKey (43 characters), for safe or compatible mode",
        secret=True,
    )
    wechat_encryption: str = setting(
        WECHAT,
        "WECHAT_ENCRYPTION",
        "plain",
        Kind(_encryption),
        "`safe`, `compatible` or `plain`: must match the console's 消息加解密方式",
        note="Safe mode refuses plaintext callbacks. Plain mode cannot authenticate the message body; use safe mode.",
        blank_means="`safe` with an AES key, else `plain`",
    )
    wechat_timestamp_window: int = setting(
        WECHAT,
        "WECHAT_TIMESTAMP_WINDOW",
        300,
        _whole(30, 3600),
        "callbacks whose signed timestamp is further from now (seconds, 30–3600) are refused",
    )
    wechat_api_url: str = setting(
        WECHAT,
        "WECHAT_API_URL",
        "https://api.weixin.qq.com",
        Kind(_url),
        "base of every WeChat API call (WeChat publishes alternative domains such as `api2.weixin.qq.com`)",
    )
    http_host: str = setting(
        HTTP,
        "DARKROOM_HTTP_HOST",
        "127.0.0.1",
        TEXT,
        "address of the HTTP server for `/telegram`, `/wechat`, the on-device page `/app/` and `GET /healthz`",
    )
    http_port: int = setting(HTTP, "DARKROOM_HTTP_PORT", 8080, _whole(0, 65535), "port of that HTTP server")
    webapp_url: str = setting(
        HTTP,
        "DARKROOM_WEBAPP_URL",
        CHAT.webapp_url,
        Kind(_webapp_url),
        "public `https://` URL of `/app/`: turns on the on-device page's buttons and links in Telegram and WeChat "
        "(the page is always served when no platform is configured)",
        note='They offer "Style it on my phone — the photo is never sent". /app/ is on the server above, behind your '
        "reverse proxy.",
        example="https://darkroom.example.org/app/",
    )
    data_dir: Path = setting(
        PRIVACY,
        "DARKROOM_DATA_DIR",
        Path("./data"),
        PATH,
        "holds the SQLite database and the pseudonym key, nothing else (`darkroom audit` checks)",
    )
    secret: bytes = setting(  # pseudonym key; loaded or created at start
        PRIVACY,
        "DARKROOM_SECRET",
        b"",
        Kind(_secret, bytes.decode),
        "pseudonym key (HMAC-SHA256), at least 32 characters",
        secret=True,
        note="Changing it forgets everyone's consent.",
        blank_means="created in the data dir (mode 0600)",
    )
    database_url: str = setting(  # holds a password
        PRIVACY,
        "DARKROOM_DATABASE_URL",
        "",
        Kind(_database_url),
        "`postgresql://user:password@host:5432/database`: keep the rows on PostgreSQL so several processes can share "
        "them (needs `pip install 'darkroom-bot[scale]'` and `DARKROOM_SECRET`, the same in every process; see "
        '"Scaling out")',
        secret=True,
        blank_means="SQLite in the data dir",
    )
    input_ttl: int = setting(
        PRIVACY,
        "DARKROOM_INPUT_TTL",
        CHAT.input_ttl,
        _whole(0, MAX_INPUT_TTL),
        f'seconds an input may stay in memory after the reply ("another style"), at most {MAX_INPUT_TTL}',
        note="0 releases it right after the reply. The consent notice states the value in force, and changing it "
        "asks everyone to consent again.",
    )
    reply_ttl: int = setting(
        PRIVACY,
        "DARKROOM_REPLY_TTL",
        CHAT.reply_ttl,
        _whole(0, MAX_REPLY_TTL),
        f"delete the bot's styled-photo messages after this many seconds (0: never; at most {MAX_REPLY_TTL // 3600} h)",
        note="Telegram only lets bots delete their messages for 48 hours.",
    )
    delete_selfie: bool = setting(
        PRIVACY,
        "DARKROOM_DELETE_SELFIE",
        CHAT.delete_selfie,
        FLAG,
        "delete the person's selfie message in private chats after the reply",
    )
    min_age: int = setting(
        PRIVACY, "DARKROOM_MIN_AGE", CHAT.min_age, _whole(13, 99), "minimum age confirmed in the consent notice"
    )
    operator: str = setting(
        PRIVACY,
        "DARKROOM_OPERATOR",
        CHAT.operator,
        TEXT,
        "who runs the bot (a name and a contact); shown in the consent notice and `/privacy`",
    )
    default_style: str = setting(
        STYLING,
        "DARKROOM_DEFAULT_STYLE",
        CHAT.default_style or "",
        TEXT,
        "style for a group `/style` without a name, and for `darkroom stylize` without `--style`",
        blank_means="the first style",
    )
    max_side: int = setting(
        STYLING, "DARKROOM_MAX_SIDE", 1280, _whole(64, 4096), "long side, in pixels, photos are styled and returned at"
    )
    max_input_bytes: int = setting(
        STYLING,
        "DARKROOM_MAX_INPUT_MB",
        CHAT.max_input_bytes,
        _whole(1, 200, MB),
        "larger inputs (megabytes) are refused before download",
    )
    max_input_pixels: int = setting(
        STYLING,
        "DARKROOM_MAX_INPUT_MEGAPIXELS",
        50 * MEGAPIXEL,
        _whole(1, 400, MEGAPIXEL),
        "larger inputs (megapixels) are refused before decoding; decoding itself is stopped after 2 s of CPU, and a "
        "JPEG with more than 100 scans is refused unread",
    )
    threads: int = setting(
        STYLING,
        "DARKROOM_THREADS",
        0,
        _whole(0, 256),
        "inference threads (onnxruntime and OpenVINO); 0: every core this process may use",
    )
    jpeg_quality: int = setting(STYLING, "DARKROOM_JPEG_QUALITY", 90, _whole(50, 100), "JPEG quality of results")
    visible_label: bool = setting(
        STYLING,
        "DARKROOM_VISIBLE_LABEL",
        False,
        FLAG,
        'draw a small "AI" mark in a corner of every result (the XMP label is always there)',
    )
    custom_styles: Path | None = setting(
        STYLING,
        "DARKROOM_CUSTOM_STYLES",
        None,
        OPTIONAL_PATH,
        'TOML file adding styles from your own ONNX files (path, sha256, licence, source; see "Models")',
    )
    engine: str = setting(
        STYLING,
        "DARKROOM_ENGINE",
        "",
        Kind(_engine),
        '`onnxruntime` or `openvino`: forces where the neural styles run (see "Models")',
        note="Darkroom then times onnxruntime and OpenVINO (fp32, and bf16 where the CPU reports it) on a small "
        "portrait, checks each against onnxruntime fp32 (>= 45 dB on every style) and keeps the "
        "fastest; /healthz and `darkroom styles --engine` show the choice.",
        blank_means="chosen at start-up",
    )
    precision: str = setting(
        STYLING,
        "DARKROOM_PRECISION",
        "",
        Kind(_precision),
        "`fp32` or `bf16` (bf16 only where the CPU reports it); `int8` is refused: not offered",
        blank_means="chosen at start-up",
    )
    queue_limit: int = setting(
        LOAD,
        "DARKROOM_QUEUE_LIMIT",
        100,
        _whole(1, 100_000),
        "waiting photos before people are told the bot is busy",
    )
    per_person_pending: int = setting(
        LOAD,
        "DARKROOM_PER_PERSON_PENDING",
        5,
        _whole(1, 1000),
        "photos one person may have waiting or running",
    )
    rate_limit_per_hour: int = setting(
        LOAD,
        "DARKROOM_RATE_LIMIT_PER_HOUR",
        20,
        _whole(0, 100_000),
        "photos per person per hour, each photo of an album counted, kept across `/delete_my_data` (0: no limit)",
    )
    broker_url: str = setting(
        SCALE,
        "DARKROOM_BROKER_URL",
        "",
        Kind(_broker_url),
        "photos are styled by `darkroom worker`s through this Celery broker (`redis://…`, `amqp://…`); unset, "
        "everything runs in `darkroom run`",
        secret=True,
        example="redis://127.0.0.1:6379/0",
    )
    redis_url: str = setting(
        SCALE,
        "DARKROOM_REDIS_URL",
        "",
        Kind(_redis_url),
        "Redis shared by every process: the sealed WeChat token, Telegram's global send limits, and the workers' "
        "claims, revocations and sealed outcomes",
        secret=True,
        note="Run it without persistence: redis-server --save '' --appendonly no.",
        blank_means="the broker, if Redis",
    )
    worker_slots: int = setting(
        SCALE,
        "DARKROOM_WORKER_SLOTS",
        2,
        _whole(1, 10_000),
        "front: how many styling processes all workers have together (jobs out at once: this + 1)",
    )
    worker_concurrency: int = setting(
        SCALE,
        "DARKROOM_WORKER_CONCURRENCY",
        1,
        _whole(1, 256),
        "worker: styling processes, each with its own engine; × `DARKROOM_THREADS` = the box's cores",
    )
    job_timeout: int = setting(
        SCALE,
        "DARKROOM_JOB_TIMEOUT",
        300,
        _whole(5, 3600),
        "front: seconds without an answer from the workers before the person is asked to send the photo again",
    )
    worker_metrics_port: int = setting(
        SCALE,
        "DARKROOM_WORKER_METRICS_PORT",
        0,
        _whole(0, 65535),
        "worker: Prometheus metrics on 127.0.0.1 at this port (+ the styling process's index); 0: none",
    )
    metrics: bool = setting(
        SCALE, "DARKROOM_METRICS", False, FLAG, "front: Prometheus `GET /metrics` on the HTTP server"
    )
    log_level: str = setting(
        OPERATIONS,
        "DARKROOM_LOG_LEVEL",
        "INFO",
        Kind(_log_level),
        "`DEBUG`, `INFO`, `WARNING` or `ERROR`; third-party libraries stay at WARNING",
        note="Logs never carry ids, names, captions, file ids or tokens.",
    )

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token)

    @property
    def wechat_enabled(self) -> bool:
        return bool(self.wechat_token and self.wechat_appid and self.wechat_secret)

    @property
    def local_only(self) -> bool:
        """No platform configured: `darkroom run` serves just the on-device page on this machine."""
        return not (self.telegram_enabled or self.wechat_enabled)

    @property
    def serves_webapp(self) -> bool:
        return bool(self.webapp_url) or self.local_only

    @property
    def needs_http(self) -> bool:
        return (
            (self.telegram_enabled and self.telegram_mode == "webhook")
            or self.wechat_enabled
            or self.serves_webapp
            or self.metrics
        )

    @property
    def scaled_out(self) -> bool:
        """Photos are styled by `darkroom worker`s, not in this process."""
        return bool(self.broker_url)

    @property
    def database(self) -> Path:
        return self.data_dir / "darkroom.sqlite3"

    @property
    def secret_file(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def broker_password(self) -> str:
        return unquote(urlsplit(self.broker_url).password or "") if self.broker_url else ""

    @property
    def redis_password(self) -> str:
        return unquote(urlsplit(self.redis_url).password or "") if self.redis_url else ""

    def secrets(self) -> list[str | bytes]:
        """Values that must never appear in a log line (logs.Redactor also removes their hex,
        base64 and percent-encoded forms)."""
        values: list[str | bytes] = [getattr(self, s.name) for s in SETTINGS if s.secret]
        values += [  # and the secret parts of some of them, on their own
            self.telegram_bot_token.partition(":")[2],  # the token's secret half
            self.broker_password,  # (a short one still hides inside its URL, above)
            self.redis_password,
            unquote(urlsplit(self.database_url).password or "") if self.database_url else "",
        ]
        if self.wechat_aes_key:
            try:  # WeChat's EncodingAESKey is the base64 of the real key, without its padding
                values.append(base64.b64decode(self.wechat_aes_key + "=", validate=True))
            except ValueError:
                pass
        return [v for v in values if v and len(v) >= 6]


# The table: every Settings field's declaration, in the order of the fields (and of .env.example).
SETTINGS: tuple[Setting, ...] = tuple(
    replace(f.metadata["setting"], name=f.name, default=f.default) for f in fields(Settings) if "setting" in f.metadata
)


def from_environment(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Settings from ``environ`` (default: the process environment) over the `.env` file."""
    values: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(os.environ if environ is None else environ)

    parsed: dict[str, Any] = {}
    defaulted: set[str] = set()  # keys absent or blank: their default applies
    for s in SETTINGS:
        raw = values.get(s.env)
        value = None if raw is None else s.kind.parse(raw, s.env)
        if value is None:
            defaulted.add(s.env)
        parsed[s.name] = s.default if value is None else value
    settings = Settings(**parsed)

    # What some settings mean depends on others.
    aes_key = settings.wechat_aes_key
    encryption = "safe" if aes_key and "WECHAT_ENCRYPTION" in defaulted else settings.wechat_encryption
    if encryption != "plain" and not aes_key:
        raise SettingsError(f"WECHAT_ENCRYPTION={encryption} needs WECHAT_AES_KEY")
    if settings.telegram_mode == "webhook" and settings.telegram_enabled and not settings.telegram_webhook_url:
        raise SettingsError("TELEGRAM_WEBHOOK_URL is required when TELEGRAM_MODE=webhook")
    if settings.database_url and not settings.secret:
        # A key created in one machine's data directory would give each process sharing the
        # database different pseudonyms: consent given to one would be unknown to the others.
        raise SettingsError("DARKROOM_DATABASE_URL needs DARKROOM_SECRET, the same in every process sharing the database")
    broker = settings.broker_url
    redis_url = settings.redis_url or (broker if broker.startswith(REDIS_SCHEMES) else "")
    if broker and not redis_url.startswith(REDIS_SCHEMES):
        raise SettingsError("DARKROOM_BROKER_URL is not Redis: set DARKROOM_REDIS_URL (workers keep results and marks there)")
    if broker and settings.input_ttl:
        raise SettingsError("DARKROOM_INPUT_TTL keeps photos in the front's memory; with DARKROOM_BROKER_URL set it must be 0")
    return replace(
        settings,
        wechat_encryption=encryption,
        telegram_webhook_secret=settings.telegram_webhook_secret or secrets.token_urlsafe(32),
        redis_url=redis_url,
    )


# ---- .env.example and the README table, generated from SETTINGS -----------------------------

ROOT = Path(__file__).resolve().parents[1]  # the source checkout holding .env.example and README.md
REGENERATE = "python -m bot.settings --write"
WIDTH = 100  # of .env.example's lines
ENV_EXAMPLE_HEAD = f"""\
# Darkroom settings. Copy to .env (or set them in the environment; the environment wins).
# Nothing is required: with neither TELEGRAM_BOT_TOKEN nor the WECHAT_* trio, `darkroom run` serves
# only the on-device page on this machine.
# Generated from bot/settings.py (`{REGENERATE}`): change a setting there, not here.
"""


def env_example() -> str:
    """`.env.example`: every key under its group's heading, with its doc as a comment."""
    lines = ENV_EXAMPLE_HEAD.splitlines()
    group = None
    for s in SETTINGS:
        if s.group != group:
            group = s.group
            lines += ["", f"# ---- {group.title} ".ljust(WIDTH, "-"), *_comment(group.note)]
        text = _sentence(s.doc)
        if s.blank_means:
            text += f" Empty: {s.blank_means}."
        if s.note:
            text += " " + s.note
        if s.secret:
            text += " Never logged."
        lines += _comment(text)
        value = "" if s.blank_means else s.kind.write(s.default)  # empty: worked out at start-up
        lines.append(f"# {s.env}={s.example}" if s.example else f"{s.env}={value}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The README's settings table: one row per key."""
    rows = ["| Key | Default | Meaning |", "|---|---|---|"]
    for s in SETTINGS:
        value = s.kind.write(s.default)
        default = s.blank_means or (f"`{value}`" if value else "–")
        meaning = s.doc + ("; never logged" if s.secret else "")
        rows.append(f"| `{s.env}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


def readme_with_table(readme: str) -> str:
    """``readme`` with the first table of its "## Settings" section replaced by `markdown_table`
    (the prose around it is kept)."""
    head, heading, section = readme.partition("\n## Settings\n")
    if not heading:
        raise ValueError('README.md has no "## Settings" section')
    lines = section.split("\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(first, len(lines)) if not lines[i].startswith("|"))
    return head + heading + "\n".join(lines[:first] + markdown_table().splitlines() + lines[end:])


def _sentence(doc: str) -> str:
    """A table cell as a comment sentence: capitalised, unless it starts with code."""
    if not doc:
        return ""
    text = doc if doc.startswith("`") else doc[0].upper() + doc[1:]
    return text if text.endswith(".") else text + "."


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False) if text else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.settings", description="Print or rewrite what is generated from the settings table."
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--env-example", action="store_true", help="print .env.example")
    what.add_argument("--markdown", action="store_true", help="print the README's settings table")
    what.add_argument("--write", action="store_true", help="rewrite .env.example and the README's table in this checkout")
    args = parser.parse_args(argv)
    if args.env_example:
        sys.stdout.write(env_example())
    elif args.markdown:
        sys.stdout.write(markdown_table())
    else:
        (ROOT / ".env.example").write_text(env_example())
        readme = ROOT / "README.md"
        readme.write_text(readme_with_table(readme.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
