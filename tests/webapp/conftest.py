"""Fixtures for the page in a real browser: one `darkroom run` with no platform for the whole
session, one Debian Chromium driven by Playwright, and contexts at the sizes people use."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.webapp.driving import CHROMIUM, CHROMIUM_ARGS, Recorder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def darkroom_page(tmp_path_factory):
    """`darkroom run` with no platform: the page on 127.0.0.1, the address read from its output."""
    work = tmp_path_factory.mktemp("run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(DARKROOM_HTTP_PORT=str(_free_port()), DARKROOM_DATA_DIR=str(work / "data"), PYTHONUNBUFFERED="1")
    darkroom = shutil.which("darkroom", path=str(Path(sys.executable).parent)) or "darkroom"
    process = subprocess.Popen([darkroom, "run"], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.match(r"Darkroom on-device page: (http://127\.0\.0\.1:\d+/app/)", line)
        assert match, f"unexpected first line {line!r}; stderr: {process.stderr.read() if process.poll() is not None else ''}"
        yield match.group(1)
    finally:
        process.terminate()
        process.wait(timeout=20)


# Module-scoped: Playwright's sync API runs an event loop of its own, which must be gone before
# the asyncio tests of another module run.
@pytest.fixture(scope="module")
def playwright():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"Chromium is needed at {CHROMIUM} (Debian: apt install chromium) or DARKROOM_CHROMIUM"
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def chromium(playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def browser_context(chromium):
    # No service worker here, so that page.route sees every request; test_page_flow.py has one.
    context = chromium.new_context(viewport={"width": 480, "height": 900}, service_workers="block")
    try:
        yield context
    finally:
        context.close()


def page_in(context):
    """A page of ``context`` that records every request and fails the test on a script error."""
    page = context.new_page()
    page.recorder = Recorder(context)
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return page


@pytest.fixture
def page(browser_context):
    page = page_in(browser_context)
    yield page
    page.close()
    page.recorder.stop()
    assert not page.errors, page.errors
