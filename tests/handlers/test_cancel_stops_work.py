"""Cancel means stop: /delete_my_data while a photo is being decoded or styled stops that work
(the decode child is killed, the onnxruntime run is terminated), and the engine is free for the
next person at once."""

from __future__ import annotations

import asyncio
import threading
import time

from handlers.replies import SendPhotos
from inference import Cancelled, imageio
from tests.processes import async_wait_for, children, the_decode_child


def sleep_forever(data, limits):
    time.sleep(3600)  # a decode that would hold the engine for an hour


def receipt(harness) -> str:
    return next(t for t in reversed(harness.platform.texts()) if t.startswith("Deleted. Receipt"))


async def consented(harness, name="alice"):
    person = harness.person(name)
    await harness.agree(person)
    return person


async def test_delete_my_data_during_a_decode_kills_the_decode_child(harness, small_portrait, monkeypatch):
    real = imageio.decode_here
    monkeypatch.setattr(imageio, "decode_here", sleep_forever)
    alice = await consented(harness, "alice")
    await harness.photo(alice, small_portrait, caption="ink")
    child = await asyncio.to_thread(the_decode_child)
    assert child is not None, "the decode never started"

    await harness.command(alice, "/delete_my_data")
    assert await async_wait_for(lambda: child not in children(), timeout=5), "the decode child is still running"
    assert "queued or running jobs cancelled: 1" in receipt(harness)
    await harness.idle(timeout=5)
    assert harness.platform.replies(SendPhotos) == []
    assert all(not any(buffer) for buffer in harness.platform.buffers)

    # The engine's one slot is free again: the next person is served now, not in an hour.
    monkeypatch.setattr(imageio, "decode_here", real)
    bob = await consented(harness, "bob")
    await harness.photo(bob, small_portrait, caption="film")
    await harness.idle(timeout=30)
    assert len(harness.platform.replies(SendPhotos)) == 1


async def test_delete_my_data_during_inference_terminates_the_onnxruntime_run(harness, engine, small_portrait, monkeypatch):
    real = engine.multistyle.run
    started = threading.Event()
    ended = threading.Event()
    outcome: dict[str, object] = {}

    def long_run(rgb, weights, cancel=None):
        started.set()
        try:
            for _ in range(1000):  # minutes of styling, unless the run is terminated
                real(rgb, weights, cancel)
        except Exception as exc:
            outcome["error"] = exc
            raise
        finally:
            ended.set()
        return real(rgb, weights, cancel)

    monkeypatch.setattr(engine.multistyle, "run", long_run)
    alice = await consented(harness, "alice")
    await harness.photo(alice, small_portrait, caption="ink")
    assert await async_wait_for(started.is_set), "styling never started"

    await harness.command(alice, "/delete_my_data")
    assert await async_wait_for(ended.is_set, timeout=5), "the onnxruntime run goes on after /delete_my_data"
    error = outcome.get("error")
    # onnxruntime ends a terminated run with an error naming it; OpenVINO's cancelled request
    # surfaces as Cancelled
    assert isinstance(error, Cancelled) or "terminate" in str(error).lower(), outcome
    assert "queued or running jobs cancelled: 1" in receipt(harness)
    await harness.idle(timeout=5)
    assert harness.platform.replies(SendPhotos) == []
    assert all(not any(buffer) for buffer in harness.platform.buffers)
