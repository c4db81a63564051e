"""Looking at this process's children (decode children of inference/imageio.py)."""

from __future__ import annotations

import asyncio
import os
import time


def children() -> set[int]:
    """Live (not yet exited) decode children of this process: its own children, and those of its
    decode servers (which fork them on its behalf), the servers themselves not counted."""
    from inference.imageio import DecodeServer

    servers = set(DecodeServer.pids())
    parents = {os.getpid()} | servers
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) in parents and fields[0] != "Z":
            found.add(int(entry))
    return found - servers


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


async def async_wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()
