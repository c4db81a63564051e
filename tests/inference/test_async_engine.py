"""AsyncEngine: the next photo is loaded while the current one renders, and no more networks
run at once than ``concurrency``."""

from __future__ import annotations

import asyncio
import threading

from inference import AsyncEngine


class Gated:
    """An engine whose loads and renders wait for the test to let them finish."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.most_renders = 0
        self.gates = {"load": threading.Event(), "render": threading.Event()}
        self.lock = threading.Lock()

    def _step(self, kind: str) -> str:
        with self.lock:
            self.running.append(kind)
            self.most_renders = max(self.most_renders, self.running.count("render"))
        self.gates[kind].wait(10)
        with self.lock:
            self.running.remove(kind)
        return kind

    def load(self, data, detect_faces=True, cancel=None):
        return self._step("load")

    def render(self, picture, request, style_picture=None, cancel=None):
        return self._step("render")


async def until(condition) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_the_next_photo_loads_while_one_renders_and_renders_wait_their_turn():
    engine = Gated()
    async_engine = AsyncEngine(engine, concurrency=1)
    try:
        first = asyncio.ensure_future(async_engine.render(None, None))
        await until(lambda: engine.running == ["render"])
        second = asyncio.ensure_future(async_engine.render(None, None))
        loading = asyncio.ensure_future(async_engine.load(b"photo"))
        await until(lambda: sorted(engine.running) == ["load", "render"])  # loads beside a render
        engine.gates["load"].set()
        assert await loading == "load"
        assert engine.running == ["render"] and not second.done()  # the second render waits
        engine.gates["render"].set()
        assert await first == "render" and await second == "render"
        assert engine.most_renders == 1
    finally:
        for gate in engine.gates.values():
            gate.set()
        async_engine.close()
