"""Every setting, read from the environment (and `.env`) in this one place, then passed in.

Nothing else in Darkroom reads `os.environ`. `.env.example` documents each key.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import unquote, urlsplit

MAX_INPUT_TTL = 600
MAX_REPLY_TTL = 47 * 3600  # Telegram lets bots delete their own messages for 48 hours


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the key, never its value."""


class StartupError(RuntimeError):
    """The bot cannot start (a platform refuses us or cannot be reached): a clear message for the
    operator, never a traceback, never a secret."""


@dataclass(frozen=True)
class Settings:
    # Telegram
    telegram_bot_token: str = field(default="", repr=False)
    telegram_api_url: str = "https://api.telegram.org"
    telegram_mode: str = "polling"  # or "webhook"
    telegram_webhook_url: str = ""
    telegram_webhook_secret: str = field(default="", repr=False)
    # WeChat Official Account
    wechat_token: str = field(default="", repr=False)
    wechat_appid: str = field(default="", repr=False)
    wechat_secret: str = field(default="", repr=False)
    wechat_aes_key: str = field(default="", repr=False)
    wechat_encryption: str = "plain"  # "safe" (default when an AES key is set), "compatible" or "plain"
    wechat_timestamp_window: int = 300  # callbacks signed further than this from now are refused
    wechat_api_url: str = "https://api.weixin.qq.com"
    # HTTP server (webhooks, /healthz)
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # The on-device page (/app/): its public https URL turns on the Telegram and WeChat links to it
    webapp_url: str = ""
    # Data and privacy
    data_dir: Path = Path("./data")
    secret: bytes = field(default=b"", repr=False)  # pseudonym key; loaded or created at start
    database_url: str = field(default="", repr=False)  # PostgreSQL instead of SQLite; holds a password
    input_ttl: int = 0
    reply_ttl: int = 0
    delete_selfie: bool = True
    min_age: int = 16
    operator: str = ""
    # Styling
    default_style: str = ""
    max_side: int = 1280
    max_input_bytes: int = 20 * 1024 * 1024
    max_input_pixels: int = 50_000_000
    threads: int = 0
    jpeg_quality: int = 90
    visible_label: bool = False
    custom_styles: Path | None = None
    engine: str = ""  # "" (choose at start-up), "onnxruntime" or "openvino"
    precision: str = ""  # "" (choose at start-up), "fp32" or "bf16"
    # Load
    queue_limit: int = 100
    per_person_pending: int = 5
    rate_limit_per_hour: int = 20
    # Scaling out (README "Scaling out"): with no broker, photos are styled in this process.
    broker_url: str = field(default="", repr=False)  # any Celery broker URL; Redis by default
    redis_url: str = field(default="", repr=False)  # idempotency, revocation and results (default: the broker, if Redis)
    worker_slots: int = 2  # front: jobs sent to the workers at once (their total concurrency)
    worker_concurrency: int = 1  # worker: styling processes (concurrency × DARKROOM_THREADS = cores)
    job_timeout: int = 300  # front: seconds before a job sent to the workers is given up
    worker_metrics_port: int = 0  # worker: Prometheus /metrics port (0: none)
    metrics: bool = False  # front: serve Prometheus /metrics on the HTTP server
    # Operations
    log_level: str = "INFO"

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
        values: list[str | bytes] = [
            self.broker_password,
            self.broker_url if self.broker_password else "",  # a short password still hides inside the URL
            self.redis_password,
            self.telegram_bot_token,
            self.telegram_bot_token.partition(":")[2],  # the token's secret half on its own
            self.telegram_webhook_secret,
            self.wechat_token,
            self.wechat_secret,
            self.wechat_aes_key,
            self.secret,
            self.database_url,
            unquote(urlsplit(self.database_url).password or "") if self.database_url else "",
            self.broker_url,
            self.redis_url,
        ]
        if self.wechat_aes_key:
            try:  # WeChat's EncodingAESKey is the base64 of the real key, without its padding
                values.append(base64.b64decode(self.wechat_aes_key + "=", validate=True))
            except ValueError:
                pass
        return [v for v in values if v and len(v) >= 6]


def from_environment(environ: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Settings from ``environ`` (default: the process environment) over the `.env` file."""
    values: dict[str, str] = {}
    if dotenv is not None and dotenv.is_file():
        from dotenv import dotenv_values

        values.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    get = values.get

    mode = get("TELEGRAM_MODE", "polling").strip().lower()
    if mode not in ("polling", "webhook"):
        raise SettingsError("TELEGRAM_MODE must be 'polling' or 'webhook'")
    aes_key = get("WECHAT_AES_KEY", "").strip()
    if aes_key and len(aes_key) != 43:
        raise SettingsError("WECHAT_AES_KEY must be the 43-character EncodingAESKey from the Official Account console")
    encryption = get("WECHAT_ENCRYPTION", "").strip().lower() or ("safe" if aes_key else "plain")
    if encryption not in ("safe", "compatible", "plain"):
        raise SettingsError("WECHAT_ENCRYPTION must be 'safe', 'compatible' or 'plain'")
    if encryption != "plain" and not aes_key:
        raise SettingsError(f"WECHAT_ENCRYPTION={encryption} needs WECHAT_AES_KEY")
    settings = Settings(
        telegram_bot_token=get("TELEGRAM_BOT_TOKEN", "").strip(),
        telegram_api_url=_url(get("TELEGRAM_API_URL", "https://api.telegram.org"), "TELEGRAM_API_URL"),
        telegram_mode=mode,
        telegram_webhook_url=get("TELEGRAM_WEBHOOK_URL", "").strip(),
        telegram_webhook_secret=get("TELEGRAM_WEBHOOK_SECRET", "").strip() or secrets.token_urlsafe(32),
        wechat_token=get("WECHAT_TOKEN", "").strip(),
        wechat_appid=get("WECHAT_APPID", "").strip(),
        wechat_secret=get("WECHAT_SECRET", "").strip(),
        wechat_aes_key=aes_key,
        wechat_encryption=encryption,
        wechat_timestamp_window=_int(get, "WECHAT_TIMESTAMP_WINDOW", 300, 30, 3600),
        wechat_api_url=_url(get("WECHAT_API_URL", "https://api.weixin.qq.com"), "WECHAT_API_URL"),
        http_host=get("DARKROOM_HTTP_HOST", "127.0.0.1").strip(),
        http_port=_int(get, "DARKROOM_HTTP_PORT", 8080, 0, 65535),
        webapp_url=_webapp_url(get("DARKROOM_WEBAPP_URL", "")),
        data_dir=Path(get("DARKROOM_DATA_DIR", "./data")).expanduser(),
        secret=_secret(get("DARKROOM_SECRET", "")),
        database_url=_database_url(get("DARKROOM_DATABASE_URL", "")),
        input_ttl=_int(get, "DARKROOM_INPUT_TTL", 0, 0, MAX_INPUT_TTL),
        reply_ttl=_int(get, "DARKROOM_REPLY_TTL", 0, 0, MAX_REPLY_TTL),
        delete_selfie=_bool(get, "DARKROOM_DELETE_SELFIE", True),
        min_age=_int(get, "DARKROOM_MIN_AGE", 16, 13, 99),
        operator=get("DARKROOM_OPERATOR", "").strip(),
        default_style=get("DARKROOM_DEFAULT_STYLE", "").strip(),
        max_side=_int(get, "DARKROOM_MAX_SIDE", 1280, 64, 4096),
        max_input_bytes=_int(get, "DARKROOM_MAX_INPUT_MB", 20, 1, 200) * 1024 * 1024,
        max_input_pixels=_int(get, "DARKROOM_MAX_INPUT_MEGAPIXELS", 50, 1, 400) * 1_000_000,
        threads=_int(get, "DARKROOM_THREADS", 0, 0, 256),
        jpeg_quality=_int(get, "DARKROOM_JPEG_QUALITY", 90, 50, 100),
        visible_label=_bool(get, "DARKROOM_VISIBLE_LABEL", False),
        custom_styles=Path(get("DARKROOM_CUSTOM_STYLES")).expanduser() if get("DARKROOM_CUSTOM_STYLES") else None,
        engine=_engine(get("DARKROOM_ENGINE", "")),
        precision=_precision(get("DARKROOM_PRECISION", "")),
        queue_limit=_int(get, "DARKROOM_QUEUE_LIMIT", 100, 1, 100_000),
        per_person_pending=_int(get, "DARKROOM_PER_PERSON_PENDING", 5, 1, 1000),
        rate_limit_per_hour=_int(get, "DARKROOM_RATE_LIMIT_PER_HOUR", 20, 0, 100_000),
        log_level=get("DARKROOM_LOG_LEVEL", "INFO").strip().upper(),
    )
    if settings.telegram_mode == "webhook" and settings.telegram_enabled and not settings.telegram_webhook_url:
        raise SettingsError("TELEGRAM_WEBHOOK_URL is required when TELEGRAM_MODE=webhook")
    if settings.database_url and not settings.secret:
        # A key created in one machine's data directory would give each process sharing the
        # database different pseudonyms: consent given to one would be unknown to the others.
        raise SettingsError("DARKROOM_DATABASE_URL needs DARKROOM_SECRET, the same in every process sharing the database")
    broker = _url_setting(get("DARKROOM_BROKER_URL", ""), "DARKROOM_BROKER_URL", BROKER_SCHEMES)
    redis_url = _url_setting(get("DARKROOM_REDIS_URL", ""), "DARKROOM_REDIS_URL", REDIS_SCHEMES) or (
        broker if broker.startswith(REDIS_SCHEMES) else ""
    )
    if broker and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("DARKROOM_BROKER_URL is not Redis: set DARKROOM_REDIS_URL (workers keep results and marks there)")
    if broker and settings.input_ttl:
        raise SettingsError("DARKROOM_INPUT_TTL keeps photos in the front's memory; with DARKROOM_BROKER_URL set it must be 0")
    settings = replace(
        settings,
        broker_url=broker,
        redis_url=redis_url,
        worker_slots=_int(get, "DARKROOM_WORKER_SLOTS", 2, 1, 10_000),
        worker_concurrency=_int(get, "DARKROOM_WORKER_CONCURRENCY", 1, 1, 256),
        job_timeout=_int(get, "DARKROOM_JOB_TIMEOUT", 300, 5, 3600),
        worker_metrics_port=_int(get, "DARKROOM_WORKER_METRICS_PORT", 0, 0, 65535),
        metrics=_bool(get, "DARKROOM_METRICS", False),
    )
    if settings.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError("DARKROOM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return settings


def _url(value: str, key: str) -> str:
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{key} must start with http:// or https://")
    return value


def _webapp_url(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    if not value.startswith("https://"):
        raise SettingsError("DARKROOM_WEBAPP_URL must be the public https:// URL of /app/ (Telegram opens only https pages)")
    return value if value.endswith("/") else value + "/"


def _database_url(raw: str) -> str:
    """A PostgreSQL URL (postgresql://user:password@host:port/database), or "" for SQLite. The
    error names the key, never the value: it holds a password."""
    raw = raw.strip()
    if not raw:
        return ""
    try:
        parts = urlsplit(raw)
        parts.port  # raises ValueError for a malformed port
    except ValueError:
        raise SettingsError("DARKROOM_DATABASE_URL is not a valid URL") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError("DARKROOM_DATABASE_URL must start with postgresql://")
    if not parts.path.strip("/"):
        raise SettingsError("DARKROOM_DATABASE_URL must name a database: postgresql://user:password@host:5432/darkroom")
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


def _int(get, key: str, default: int, low: int, high: int) -> int:
    raw = (get(key) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{key} must be a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"{key} must be between {low} and {high}")
    return value


def _bool(get, key: str, default: bool) -> bool:
    raw = (get(key) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{key} must be true or false")


def _engine(raw: str) -> str:
    value = raw.strip().lower()
    if value in ("", "auto"):
        return ""
    if value not in ("onnxruntime", "openvino"):
        raise SettingsError("DARKROOM_ENGINE must be onnxruntime or openvino (or empty to choose at start-up)")
    return value


def _precision(raw: str) -> str:
    value = raw.strip().lower()
    if value in ("", "auto"):
        return ""
    if value == "int8":
        raise SettingsError(
            "DARKROOM_PRECISION=int8 is not offered: it did not keep every style within 40 dB of fp32; "
            "use fp32 or bf16 (or leave it empty)"
        )
    if value not in ("fp32", "bf16"):
        raise SettingsError("DARKROOM_PRECISION must be fp32 or bf16 (or empty to choose at start-up)")
    return value


def _secret(raw: str) -> bytes:
    raw = raw.strip()
    if not raw:
        return b""
    if len(raw) < 32:
        raise SettingsError("DARKROOM_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    return raw.encode()
