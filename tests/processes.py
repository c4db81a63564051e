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


def the_decode_child(timeout: float = 10.0) -> int | None:
    """The one decode child, once there is exactly one and it stays so for a moment. A new decode
    server is, between its fork and its exec, a child of this process not yet known as a server:
    on a loaded machine that can last long enough to be taken for the decode child."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children()
        if len(found) == 1:
            time.sleep(0.3)
            if children() == found:
                return next(iter(found))
        time.sleep(0.01)
    return None


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
