"""DARKROOM_DATABASE_URL: validated without echoing it, never logged, and a database that cannot be
reached stops `darkroom run` with one line."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from bot.safeguards import logs
from bot.settings import SettingsError, from_environment

SECRET = "k" * 64
URL = "postgresql://darkroom:Pa%24%24w0rd-very-private@db.internal:5432/darkroom"


def settings(**values: str):
    return from_environment({"DARKROOM_SECRET": SECRET, **values}, dotenv=None)


def test_no_url_means_sqlite_in_the_data_directory():
    assert settings().database_url == ""
    assert settings(DARKROOM_DATA_DIR="/srv/dr").database.as_posix() == "/srv/dr/darkroom.sqlite3"


def test_a_postgresql_url_is_taken_as_given():
    assert settings(DARKROOM_DATABASE_URL=f"  {URL} ").database_url == URL
    assert settings(DARKROOM_DATABASE_URL="postgres://u@localhost/db").database_url == "postgres://u@localhost/db"


@pytest.mark.parametrize(
    "url, complaint",
    [
        ("mysql://u:secretpw@h/db", "must start with postgresql://"),
        ("postgresql://u:secretpw@h:99999/db", "not a valid URL"),
        ("postgresql://u:secretpw@h:5432", "must name a database"),
        ("secretpw", "must start with postgresql://"),
    ],
)
def test_a_bad_url_is_refused_without_repeating_it(url, complaint):
    with pytest.raises(SettingsError, match=complaint) as refused:
        settings(DARKROOM_DATABASE_URL=url)
    assert "secretpw" not in str(refused.value)


def test_several_processes_need_one_shared_secret():
    with pytest.raises(SettingsError, match="DARKROOM_SECRET"):
        from_environment({"DARKROOM_DATABASE_URL": URL}, dotenv=None)


def test_the_url_and_its_password_never_reach_a_log_line():
    loaded = settings(DARKROOM_DATABASE_URL=URL)
    assert URL not in repr(loaded)
    stream = io.StringIO()
    handler = logs.configure("DEBUG", loaded.secrets(), stream=stream)
    try:
        logging.getLogger("darkroom.test").warning("url %s, password %s", URL, "Pa$$w0rd-very-private")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "very-private" not in stream.getvalue() and "[redacted]" in stream.getvalue()


def test_an_unreachable_database_stops_darkroom_run_with_one_line_and_no_password(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "TELEGRAM_BOT_TOKEN": "123456789:AAFakeTokenForTestsOnly_abcdefghijk",
        "TELEGRAM_API_URL": "http://127.0.0.1:9",  # never reached: storage opens first
        "DARKROOM_DATA_DIR": str(tmp_path / "data"),
        "DARKROOM_SECRET": SECRET,
        "DARKROOM_DATABASE_URL": "postgresql://darkroom:NeverShowThis99@127.0.0.1:9/darkroom",
    }
    run = subprocess.run(
        [sys.executable, "-m", "bot", "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("darkroom:")]
    assert len(errors) == 1 and errors[0].startswith("darkroom: cannot connect to the PostgreSQL database at 127.0.0.1:9/darkroom: ")
    assert "Traceback" not in run.stderr and "NeverShowThis99" not in run.stderr + run.stdout


async def test_without_the_driver_the_url_asks_for_the_extra(monkeypatch):
    from bot.settings import StartupError
    from bot.storage.store import Storage

    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if `pip install -e .` without [scale]
    with pytest.raises(StartupError, match=r"pip install 'darkroom-bot\[scale\]'"):
        await Storage.open_postgres(URL, SECRET.encode())
