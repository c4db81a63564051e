"""Every setting, declared once (bot/settings/model.py says how) and read from the environment
(and `.env`) in this one place, then passed in. Nothing else in Darkroom reads `os.environ`.
`.env.example` and the README's settings table are generated from these declarations
(`python -m bot.settings --write`; bot/settings/generated.py).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values

from bot.settings.kinds import (
    FLAG,
    OPTIONAL_PATH,
    PATH,
    REDIS_SCHEMES,
    TEXT,
    read_aes_key,
    read_broker_url,
    read_database_url,
    read_encryption,
    read_engine,
    read_log_level,
    read_mode,
    read_precision,
    read_redis_url,
    read_secret,
    read_url,
    read_webapp_url,
    read_whole,
)
from bot.settings.model import (  # re-exported: the rest of Darkroom imports them from bot.settings
    CHAT,
    MAX_INPUT_TTL,
    MAX_REPLY_TTL,
    MB,
    MEGAPIXEL,
    Group,
    Kind,
    Setting,
    SettingsError,
    StartupError,  # noqa: F401  (re-exported)
    setting,
)

# ---- The settings ----------------------------------------------------------------------------

TELEGRAM = Group("Telegram")
WECHAT = Group("WeChat Official Account (service account)")
HTTP = Group("HTTP server (webhook, /wechat, /app/ and /healthz)")
PRIVACY = Group("Data and privacy")
STYLING = Group("Styling")
LABELS = Group(
    "Labels and Content Credentials",
    "What each result says about itself (README \"Labels that survive the chat\"): an XMP label always, "
    "the GB 45438 label on AI results, a visible mark where set, and C2PA Content Credentials once "
    "`darkroom credentials init` has made a signing identity.",
)
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
        Kind(read_url),
        "Bot API base; the bot calls `<url>/bot<token>/<method>` and downloads from `<url>/file/bot<token>/<path>`",
        note="Point it at your own Bot API server if you run one.",
    )
    telegram_mode: str = setting(
        TELEGRAM, "TELEGRAM_MODE", "polling", Kind(read_mode), "`polling` (no public URL needed) or `webhook`"
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
        Kind(read_aes_key),
        "EncodingAESKey (43 characters), for safe or compatible mode",
        secret=True,
    )
    wechat_encryption: str = setting(
        WECHAT,
        "WECHAT_ENCRYPTION",
        "plain",
        Kind(read_encryption),
        "`safe`, `compatible` or `plain`: must match the console's 消息加解密方式",
        note="Safe mode refuses plaintext callbacks. Plain mode cannot authenticate the message body; use safe mode.",
        blank_means="`safe` with an AES key, else `plain`",
    )
    wechat_timestamp_window: int = setting(
        WECHAT,
        "WECHAT_TIMESTAMP_WINDOW",
        300,
        read_whole(30, 3600),
        "callbacks whose signed timestamp is further from now (seconds, 30–3600) are refused",
    )
    wechat_api_url: str = setting(
        WECHAT,
        "WECHAT_API_URL",
        "https://api.weixin.qq.com",
        Kind(read_url),
        "base of every WeChat API call (WeChat publishes alternative domains such as `api2.weixin.qq.com`)",
    )
    http_host: str = setting(
        HTTP,
        "DARKROOM_HTTP_HOST",
        "127.0.0.1",
        TEXT,
        "address of the HTTP server for `/telegram`, `/wechat`, the on-device page `/app/`, `GET /healthz` and `GET /readyz`",
    )
    http_port: int = setting(HTTP, "DARKROOM_HTTP_PORT", 8080, read_whole(0, 65535), "port of that HTTP server")
    webapp_url: str = setting(
        HTTP,
        "DARKROOM_WEBAPP_URL",
        CHAT.webapp_url,
        Kind(read_webapp_url),
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
        "holds the SQLite database, the pseudonym key and the signing identity, nothing else (`darkroom audit` checks)",
    )
    secret: bytes = setting(  # pseudonym key; loaded or created at start
        PRIVACY,
        "DARKROOM_SECRET",
        b"",
        Kind(read_secret, bytes.decode),
        "pseudonym key (HMAC-SHA256), at least 32 characters",
        secret=True,
        note="Changing it forgets everyone's consent.",
        blank_means="created in the data dir (mode 0600)",
    )
    database_url: str = setting(  # holds a password
        PRIVACY,
        "DARKROOM_DATABASE_URL",
        "",
        Kind(read_database_url),
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
        read_whole(0, MAX_INPUT_TTL),
        f'seconds an input may stay in memory after the reply ("another style"), at most {MAX_INPUT_TTL}',
        note="0 releases it right after the reply. The consent notice states the value in force, and changing it "
        "asks everyone to consent again.",
    )
    file_ttl: int = setting(
        PRIVACY,
        "DARKROOM_FILE_TTL",
        CHAT.file_ttl,
        read_whole(0, 600),
        'seconds the latest styled result stays in memory for Telegram\'s "Full quality (file)" button (one per person)',
        note="0: no button. Not with DARKROOM_BROKER_URL (the front holds no result). /delete_my_data releases it.",
    )
    reply_ttl: int = setting(
        PRIVACY,
        "DARKROOM_REPLY_TTL",
        CHAT.reply_ttl,
        read_whole(0, MAX_REPLY_TTL),
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
        PRIVACY, "DARKROOM_MIN_AGE", CHAT.min_age, read_whole(13, 99), "minimum age confirmed in the consent notice"
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
    preview_sheet: bool = setting(
        STYLING,
        "DARKROOM_PREVIEW_SHEET",
        CHAT.preview_sheet,
        FLAG,
        "offer a preview sheet with the style picker in private chats: the person's photo in every style, numbered",
        note="Made like a result (after consent, through the queue, AI-labelled, never stored) and deleted once a style is chosen.",
    )
    max_side: int = setting(
        STYLING, "DARKROOM_MAX_SIDE", 1280, read_whole(64, 4096), "long side, in pixels, photos are styled and returned at"
    )
    max_input_bytes: int = setting(
        STYLING,
        "DARKROOM_MAX_INPUT_MB",
        CHAT.max_input_bytes,
        read_whole(1, 200, MB),
        "larger inputs (megabytes) are refused before download",
    )
    max_input_pixels: int = setting(
        STYLING,
        "DARKROOM_MAX_INPUT_MEGAPIXELS",
        50 * MEGAPIXEL,
        read_whole(1, 400, MEGAPIXEL),
        "larger inputs (megapixels) are refused before decoding; decoding itself is stopped after 4 s of CPU, and a "
        "JPEG with more than 100 scans is refused unread",
    )
    threads: int = setting(
        STYLING,
        "DARKROOM_THREADS",
        0,
        read_whole(0, 256),
        "inference threads (onnxruntime and OpenVINO); 0: every core this process may use",
    )
    jpeg_quality: int = setting(STYLING, "DARKROOM_JPEG_QUALITY", 90, read_whole(50, 100), "JPEG quality of results")
    visible_label: bool = setting(
        STYLING,
        "DARKROOM_VISIBLE_LABEL",
        False,
        FLAG,
        'draw a small "AI-generated · AI生成" mark in a corner of every result, away from faces (the XMP label is always there)',
    )
    provider_name: str = setting(
        LABELS,
        "DARKROOM_PROVIDER_NAME",
        "",
        TEXT,
        "your name, or your service's filing code, as the service provider in the GB 45438 label (ContentProducer)",
        blank_means="the software's name (Darkroom and its version)",
        example="Example Studio",
    )
    wechat_visible_label: bool = setting(
        LABELS,
        "DARKROOM_WECHAT_VISIBLE_LABEL",
        True,
        FLAG,
        'draw a small "AI-generated · AI生成" mark on WeChat results, in the corner away from faces',
        note="On by default: WeChat accounts serve people in mainland China, where the AI labelling measures and "
        "GB 45438-2025 ask for a mark people can see. DARKROOM_VISIBLE_LABEL marks every platform's results.",
    )
    content_credentials: bool = setting(
        LABELS,
        "DARKROOM_CONTENT_CREDENTIALS",
        True,
        FLAG,
        "sign every result with C2PA Content Credentials when the data dir holds a signing identity "
        "(`darkroom credentials init`)",
        note="Signing is offline and in memory; without an identity results are not signed.",
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
        Kind(read_engine),
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
        Kind(read_precision),
        "`fp32` or `bf16` (bf16 only where the CPU reports it); `int8` is refused: not offered",
        blank_means="chosen at start-up",
    )
    queue_limit: int = setting(
        LOAD,
        "DARKROOM_QUEUE_LIMIT",
        100,
        read_whole(1, 100_000),
        "waiting photos before people are told the bot is busy",
    )
    per_person_pending: int = setting(
        LOAD,
        "DARKROOM_PER_PERSON_PENDING",
        5,
        read_whole(1, 1000),
        "photos one person may have waiting or running",
    )
    rate_limit_per_hour: int = setting(
        LOAD,
        "DARKROOM_RATE_LIMIT_PER_HOUR",
        20,
        read_whole(0, 100_000),
        "photos per person per hour, each photo of an album counted, kept across `/delete_my_data` (0: no limit)",
    )
    broker_url: str = setting(
        SCALE,
        "DARKROOM_BROKER_URL",
        "",
        Kind(read_broker_url),
        "photos are styled by `darkroom worker`s through this Celery broker (`redis://…`, `amqp://…`); unset, "
        "everything runs in `darkroom run`",
        secret=True,
        example="redis://127.0.0.1:6379/0",
    )
    redis_url: str = setting(
        SCALE,
        "DARKROOM_REDIS_URL",
        "",
        Kind(read_redis_url),
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
        read_whole(1, 10_000),
        "front: styling processes assumed until the workers' heartbeats tell (then they decide; jobs out at once: that + 1)",
    )
    worker_concurrency: int = setting(
        SCALE,
        "DARKROOM_WORKER_CONCURRENCY",
        1,
        read_whole(1, 256),
        "worker: styling processes, each with its own engine; × `DARKROOM_THREADS` = the box's cores",
    )
    job_timeout: int = setting(
        SCALE,
        "DARKROOM_JOB_TIMEOUT",
        300,
        read_whole(5, 3600),
        "front: seconds without an answer from the workers before the person is asked to send the photo again",
    )
    worker_metrics_port: int = setting(
        SCALE,
        "DARKROOM_WORKER_METRICS_PORT",
        0,
        read_whole(0, 65535),
        "worker: `GET /healthz`, `GET /readyz` and Prometheus `GET /metrics` (all its styling processes) on this port; 0: none",
    )
    worker_metrics_host: str = setting(
        SCALE,
        "DARKROOM_WORKER_METRICS_HOST",
        "127.0.0.1",
        TEXT,
        "worker: address of that port (`0.0.0.0` so that Prometheus on another machine can scrape it)",
    )
    metrics: bool = setting(
        SCALE, "DARKROOM_METRICS", False, FLAG, "front: Prometheus `GET /metrics` on the HTTP server"
    )
    log_level: str = setting(
        OPERATIONS,
        "DARKROOM_LOG_LEVEL",
        "INFO",
        Kind(read_log_level),
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


