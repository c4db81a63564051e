"""What a `darkroom worker`'s processes import: Celery's main process, which only hands tasks to
its styling processes, does not load the platforms' clients (python-telegram-bot, httpx,
aiohttp, wechatpy: ~30 MB of its RSS); each styling process loads them at start-up, before it freezes
start-up out of the garbage collector (bot/safeguards/heap.py), so that its per-job collection
does not walk them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ("telegram", "httpx", "aiohttp")

CHILD = f"""
import json, sys
import bot.scale.worker as worker
main = [m for m in {CLIENTS!r} if m in sys.modules]
worker._import_clients()
styling = [m for m in {CLIENTS!r} if m in sys.modules]
print(json.dumps({{"main": main, "styling": styling}}))
"""


def test_celerys_main_process_does_not_load_the_platform_clients():
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["main"] == []
    assert seen["styling"] == list(CLIENTS)
