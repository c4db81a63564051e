"""How each setting's text becomes its value (and is written back, for `.env.example`). Every
error is a SettingsError naming the key, never the value: some values are secrets."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from bot.settings.model import Kind, SettingsError


def _text(raw: str, key: str) -> str:
    return raw.strip()


def read_whole(low: int, high: int, unit: int = 1) -> Kind[int]:
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


def read_mode(raw: str, key: str) -> str:
    value = raw.strip().lower()
    if value not in ("polling", "webhook"):
        raise SettingsError(f"{key} must be 'polling' or 'webhook'")
    return value


def read_aes_key(raw: str, key: str) -> str:
    value = raw.strip()
    if value and len(value) != 43:
        raise SettingsError(f"{key} must be the 43-character EncodingAESKey from the Official Account console")
    return value


def read_encryption(raw: str, key: str) -> str | None:
    value = raw.strip().lower()
    if not value:
        return None  # from_environment: "safe" with an AES key, else "plain"
    if value not in ("safe", "compatible", "plain"):
        raise SettingsError(f"{key} must be 'safe', 'compatible' or 'plain'")
    return value


def read_log_level(raw: str, key: str) -> str:
    value = raw.strip().upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{key} must be DEBUG, INFO, WARNING or ERROR")
    return value


TEXT: Kind[str] = Kind(_text)
FLAG: Kind[bool] = Kind(_flag, lambda value: "true" if value else "false")
PATH: Kind[Path] = Kind(_path, _write_path)
OPTIONAL_PATH: Kind[Path | None] = Kind(_optional_path, _write_path)


def read_url(raw: str, key: str) -> str:
    value = raw.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{key} must start with http:// or https://")
    return value


def read_webapp_url(raw: str, key: str) -> str:
    value = raw.strip()
    if not value:
        return ""
    if not value.startswith("https://"):
        raise SettingsError(f"{key} must be the public https:// URL of /app/ (Telegram opens only https pages)")
    return value if value.endswith("/") else value + "/"


def read_database_url(raw: str, key: str) -> str:
    """A PostgreSQL URL (postgresql://user:password@host:port/database), or "" for SQLite. The
    error names the key, never the value: it holds a password."""
    raw = raw.strip()
    if not raw:
        return ""
    try:
        parts = urlsplit(raw)
        _ = parts.port  # raises ValueError for a malformed port
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
        _ = urlsplit(value).port  # a malformed port raises here, not deep inside the client
    except ValueError:
        raise SettingsError(f"{key} has a malformed port") from None
    return value


def read_broker_url(raw: str, key: str) -> str:
    return _url_setting(raw, key, BROKER_SCHEMES)


def read_redis_url(raw: str, key: str) -> str:
    return _url_setting(raw, key, REDIS_SCHEMES)


def read_engine(raw: str, key: str) -> str:
    value = raw.strip().lower()
    if value in ("", "auto"):
        return ""
    if value not in ("onnxruntime", "openvino"):
        raise SettingsError(f"{key} must be onnxruntime or openvino (or empty to choose at start-up)")
    return value


def read_precision(raw: str, key: str) -> str:
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


def read_secret(raw: str, key: str) -> bytes:
    raw = raw.strip()
    if not raw:
        return b""
    if len(raw) < 32:
        raise SettingsError(f"{key} must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    return raw.encode()


