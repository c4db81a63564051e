"""Limits that stick and refusals that do not flood: the hourly photo count survives erasure,
an album counts each photo, and a flood of photos is refused once a minute, not once each."""

from __future__ import annotations

from handlers.replies import SendPhotos, SendText

REFUSALS = ("You've sent a lot of photos", "You already have photos waiting", "I'm very busy")


def refusals(harness) -> list[str]:
    return [r.text for r in harness.platform.replies(SendText) if r.text.startswith(REFUSALS)]


async def test_erasure_and_new_consent_do_not_reset_the_hourly_count(harness, small_portrait):
    harness.queue.rate_per_hour = 3
    alice = harness.person("alice")
    await harness.agree(alice)
    for _ in range(3):
        await harness.photo(alice, small_portrait, caption="ink")
        await harness.idle()
    assert len(harness.platform.replies(SendPhotos)) == 3
    await harness.command(alice, "/delete_my_data")
    await harness.agree(alice)
    await harness.photo(alice, small_portrait, caption="ink")
    await harness.idle()
    assert len(harness.platform.replies(SendPhotos)) == 3
    assert refusals(harness)[-1].startswith("You've sent a lot of photos")


async def test_every_photo_of_an_album_counts(harness, small_portrait):
    harness.queue.rate_per_hour = 5
    alice = harness.person("alice")
    await harness.agree(alice)
    await harness.photo(alice, [small_portrait] * 4, caption="ink")
    await harness.idle()
    await harness.photo(alice, [small_portrait] * 4, caption="ink")  # 8 > 5
    await harness.idle()
    assert [len(r.photos) for r in harness.platform.replies(SendPhotos)] == [4]
    assert refusals(harness) == [refusals(harness)[0]] and refusals(harness)[0].startswith("You've sent a lot")


async def test_a_flood_of_photos_is_refused_once_a_minute_not_once_each(harness, small_portrait):
    harness.queue.rate_per_hour = 0
    alice, bob = harness.person("alice"), harness.person("bob")
    await harness.agree(alice)
    await harness.agree(bob)
    for _ in range(100):
        await harness.photo(alice, small_portrait, caption="ink")
    assert len(refusals(harness)) == 1
    harness.ctx.memory.clock = lambda: 10**9  # a minute (and more) later
    for _ in range(10):
        await harness.photo(alice, small_portrait, caption="ink")
    assert len(refusals(harness)) == 2
    await harness.photo(bob, small_portrait, caption="ink")  # someone else is refused or served on their own
    await harness.idle(timeout=120)
    chats = {s.chat for s in harness.platform.sent if isinstance(s.reply, SendPhotos)}
    assert harness.private(bob).address in chats
