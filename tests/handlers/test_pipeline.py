"""Each step of the styling pipeline on its own, and the pipeline end to end (handlers/pipeline.py).
Real engine; the platform is the recording fake."""

from __future__ import annotations

import asyncio
import json

import pytest

import inference.errors as errors
from handlers import pipeline
from handlers.events import Address, MessageRef, PhotoRef
from handlers.memory import InputBuffer
from handlers.photos import OUTCOME_TEXT, REJECTION_TEXT
from handlers.ports import FetchFailed, PhotoTooLarge
from handlers.replies import Button, ChatAction, SendPhotos
from handlers.texts import TEXTS
from inference import AsyncEngine, StyleRequest
from tests.fakes.platform import FakePlatform

CHAT = Address("fake", "chat-1")


@pytest.fixture
async def engine_async(engine):
    async_engine = AsyncEngine(engine)
    yield async_engine
    async_engine.close()


def work(refs, **extra) -> pipeline.StyleJob:
    values = dict(key="k1", chat=CHAT, photos=tuple(refs), request=StyleRequest("ink"), caption="Ink wash")
    values.update(extra)
    return pipeline.StyleJob(**values)


def platform_with(**photos: bytes) -> FakePlatform:
    platform = FakePlatform()
    platform.photos.update(photos)
    return platform


def test_style_work_round_trips_through_json():
    original = work(
        [PhotoRef("file-a", size=10), PhotoRef("file-b", mime="image/png", is_document=True)],
        another=Button("Another", "again:", ("again", "换风格")),
        reply_to=MessageRef(CHAT, "7"),
        style_picture=PhotoRef("file-s"),
        others_confirmed=True,
    )
    again = pipeline.StyleJob.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again == original


def test_outcome_round_trips_and_drops_inputs_and_unknown_kinds():
    outcome = pipeline.Outcome(pipeline.OutcomeKind.DONE, styled=1, sent=MessageRef(CHAT, "9"), seconds=1.5, inputs=[InputBuffer(bytearray(b"x"))])
    data = json.loads(json.dumps(outcome.to_dict()))
    assert "inputs" not in data
    back = pipeline.Outcome.from_dict(data)
    assert (back.kind, back.sent, back.styled, back.inputs) == (pipeline.OutcomeKind.DONE, MessageRef(CHAT, "9"), 1, [])
    assert pipeline.Outcome.from_dict({"kind": "rm -rf"}).kind == pipeline.OutcomeKind.FAILED


async def test_fetch_downloads_into_buffers_and_releases_all_when_one_fails(small_portrait):
    platform = platform_with(a=small_portrait)
    buffers = await pipeline.fetch(platform, (PhotoRef("a"),), 10**7)
    assert [bytes(b.data) for b in buffers] == [small_portrait]
    with pytest.raises(FetchFailed):
        await pipeline.fetch(platform, (PhotoRef("a"), PhotoRef("gone")), 10**7)
    assert all(not any(b) for b in platform.buffers[1:])  # the first download of the pair was zeroed
    with pytest.raises(PhotoTooLarge):
        await pipeline.fetch(platform, (PhotoRef("a"),), 100)


async def test_load_appends_every_picture_and_faces_to_confirm(engine_async, small_portrait, two_faces):
    pictures = []
    loaded = await pipeline.load(engine_async, [InputBuffer(bytearray(small_portrait)), InputBuffer(bytearray(two_faces))], pictures)
    assert loaded == pictures and len(pictures) == 2
    assert pipeline.faces_to_confirm(loaded[:1], False) == 0
    assert pipeline.faces_to_confirm(loaded, False) >= 2
    assert pipeline.faces_to_confirm(loaded, True) == 0


async def test_render_and_reply_for(engine_async, small_portrait):
    pictures = await pipeline.load(engine_async, [InputBuffer(bytearray(small_portrait))], [])
    results = await pipeline.render(engine_async, pictures, StyleRequest("ink"), None)
    reply = pipeline.reply_for(work([], another=Button("Another", "again:")), results)
    assert reply.photos[0].jpeg[:2] == b"\xff\xd8" and reply.photos[0].caption == "Ink wash"
    assert reply.buttons[0][0].data == "again:"


async def test_deliver_reports_the_upload_and_release_zeroes(small_portrait, engine_async):
    platform = platform_with()
    seen = []
    sent = await pipeline.deliver(platform, work([]), SendPhotos(()), seen.append)
    assert seen and seen[0].done() and seen[0].result() == sent
    buffer = InputBuffer(bytearray(small_portrait))
    raw = buffer.data
    pictures = await pipeline.load(engine_async, [buffer], [])
    rgb = pictures[0].rgb
    pipeline.release([buffer], pictures)
    assert buffer.released and not any(raw) and not rgb.any() and pictures == []


async def test_style_runs_every_step_and_releases(engine_async, small_portrait):
    platform = platform_with(a=small_portrait)
    outcome = await pipeline.style(work([PhotoRef("a")]), platform, engine_async)
    assert outcome.kind == pipeline.OutcomeKind.DONE and outcome.styled == 1 and outcome.sent is not None
    assert [type(r) for r in platform.replies()] == [ChatAction, SendPhotos]
    assert not any(platform.buffers[0])  # the download was zeroed


async def test_style_keeps_inputs_only_when_asked(engine_async, small_portrait):
    platform = platform_with(a=small_portrait)
    outcome = await pipeline.style(work([PhotoRef("a")]), platform, engine_async, keep_inputs=True)
    assert bytes(outcome.inputs[0].data) == small_portrait
    outcome.inputs[0].release()


async def test_style_asks_about_faces_before_rendering(engine_async, two_faces):
    platform = platform_with(a=two_faces)
    outcome = await pipeline.style(work([PhotoRef("a")]), platform, engine_async)
    assert outcome.kind == pipeline.OutcomeKind.FACES and outcome.faces >= 2 and outcome.inputs == []
    assert platform.replies(SendPhotos) == [] and not any(platform.buffers[0])


async def test_a_refused_claim_means_no_reply(engine_async, small_portrait):
    platform = platform_with(a=small_portrait)

    async def taken() -> bool:
        return False

    outcome = await pipeline.style(work([PhotoRef("a")]), platform, engine_async, claim=taken)
    assert outcome.kind == pipeline.OutcomeKind.CLAIMED and platform.replies(SendPhotos) == []


@pytest.mark.parametrize(
    ("photos", "kind"),
    [({}, pipeline.OutcomeKind.FETCH_FAILED), ({"a": b"not an image at all"}, pipeline.OutcomeKind.REJECTED)],
)
async def test_failures_become_outcomes(engine_async, photos, kind):
    platform = platform_with(**photos)
    outcome = await pipeline.style(work([PhotoRef("a")]), platform, engine_async)
    assert outcome.kind == kind and platform.replies(SendPhotos) == []


async def test_cancellation_propagates_and_releases(engine_async, small_portrait):
    platform = platform_with(a=small_portrait)
    platform.delays[SendPhotos] = 5.0
    task = asyncio.create_task(pipeline.style(work([PhotoRef("a")]), platform, engine_async))
    while SendPhotos not in platform.started:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(platform.buffers[0])


def test_every_way_a_job_ends_has_its_words_in_both_languages():
    assert set(OUTCOME_TEXT) == set(pipeline.OutcomeKind)
    reasons = {c.reason for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.ImageRejected)}
    assert reasons - {"invalid"} <= set(REJECTION_TEXT)  # "invalid" (the base class) reads as "corrupt"
    for key in [*filter(None, OUTCOME_TEXT.values()), *REJECTION_TEXT.values(), "photo.done_held"]:
        assert TEXTS[key]["en"] and TEXTS[key]["zh"], key
