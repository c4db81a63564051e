"""Group rules: commands only, the author's consent, the author's answer, admin switches."""

from __future__ import annotations

from handlers import consent
from handlers.replies import DeleteMessage, EditText, SendPhotos, SendText


async def test_plain_photo_in_group_is_ignored(harness, small_portrait):
    alice, group = harness.person(), harness.group()
    await harness.photo(alice, small_portrait, chat=group)
    assert harness.platform.sent == []
    assert harness.platform.fetched == []


async def test_author_without_consent_is_asked_and_photo_waits(harness, small_portrait):
    alice, group = harness.person(), harness.group()
    await harness.photo(alice, small_portrait, chat=group, caption="/style ink")
    notice = harness.platform.last(SendText)
    assert "needs to agree first" in notice.text
    assert harness.platform.fetched == []
    await harness.agree(alice, chat=group)
    ask = harness.platform.last(SendText)
    assert "Say yes only if everyone in it agreed" in ask.text  # in groups: always asked
    assert harness.platform.fetched == []
    await harness.press(alice, ask.buttons[0][0].data, chat=group)
    await harness.idle()
    reply = harness.platform.last(SendPhotos)
    assert "Ink wash" in reply.photos[0].caption
    assert reply.reply_to is not None  # answers the photo message
    assert harness.platform.replies(DeleteMessage) == []  # never deletes in groups


async def test_someone_elses_consent_press_does_not_count_for_the_author(harness, small_portrait):
    alice, bob, group = harness.person(), harness.person("bob"), harness.group()
    await harness.photo(alice, small_portrait, chat=group, caption="/style")
    await harness.agree(bob, chat=group)
    assert await consent.has_consent(harness.ctx, bob)
    assert not await consent.has_consent(harness.ctx, alice)
    await harness.idle()
    assert harness.platform.fetched == []


async def test_request_by_another_member_needs_the_authors_own_yes(harness, small_portrait):
    alice, bob, group = harness.person(), harness.person("bob"), harness.group()
    await harness.agree(alice)  # consent given in private earlier
    photo = await harness.photo(alice, small_portrait, chat=group)
    await harness.command(bob, "/style pencil", chat=group, reply_to=photo)
    ask = harness.platform.last(SendText)
    assert "Only the sender of the photo can answer" in ask.text
    yes = ask.buttons[0][0].data
    await harness.press(bob, yes, chat=group)  # not bob's photo
    await harness.idle()
    assert harness.platform.fetched == []
    await harness.press(alice, yes, chat=group)
    await harness.idle()
    assert "Pencil sketch" in harness.platform.last(SendPhotos).photos[0].caption


async def test_author_can_say_no(harness, small_portrait):
    alice, bob, group = harness.person(), harness.person("bob"), harness.group()
    await harness.agree(alice)
    photo = await harness.photo(alice, small_portrait, chat=group)
    await harness.command(bob, "/style", chat=group, reply_to=photo)
    no = harness.platform.last(SendText).buttons[0][1].data
    await harness.press(alice, no, chat=group)
    await harness.idle()
    assert harness.platform.fetched == []
    assert "will not be styled" in harness.platform.last(EditText).text


async def test_style_command_without_a_photo_explains(harness):
    alice, group = harness.person(), harness.group()
    await harness.command(alice, "/style ink", chat=group)
    assert "Reply /style" in harness.platform.last(SendText).text


async def test_only_admins_switch_the_bot_off_and_then_it_stays_quiet(harness, small_portrait):
    alice, carol, group = harness.person(), harness.person("carol"), harness.group()
    await harness.command(alice, "/darkroom_off", chat=group)
    assert "Only group admins" in harness.platform.last(SendText).text
    assert await harness.storage.group_enabled(group.pseudonym)
    harness.platform.admins.add(carol.pseudonym)
    await harness.command(carol, "/darkroom_off", chat=group)
    assert not await harness.storage.group_enabled(group.pseudonym)
    await harness.agree(alice)
    before = [s for s in harness.platform.sent if s.chat == group.address]
    await harness.photo(alice, small_portrait, chat=group, caption="/style ink")
    await harness.idle()
    assert [s for s in harness.platform.sent if s.chat == group.address] == before
    assert harness.platform.fetched == []
    await harness.command(carol, "/darkroom_on", chat=group)
    assert await harness.storage.group_enabled(group.pseudonym)


async def test_delete_my_data_works_in_groups_without_posting_the_receipt_there(harness):
    alice, group = harness.person(), harness.group()
    await harness.agree(alice)
    await harness.command(alice, "/style ink")
    await harness.command(alice, "/delete_my_data", chat=group)
    assert await harness.storage.rows_of(alice.pseudonym) == 0
    answer = harness.platform.last(SendText).text
    assert "everything Darkroom held about you is erased" in answer
    assert "consent records" not in answer and "preferences" not in answer


async def test_removal_from_group_forgets_the_group(harness, small_portrait):
    alice, carol, group = harness.person(), harness.person("carol"), harness.group()
    harness.platform.admins.add(carol.pseudonym)
    await harness.command(carol, "/darkroom_off", chat=group)
    await harness.photo(alice, small_portrait, chat=group, caption="/style ink")
    await harness.command(carol, "/darkroom_on", chat=group)
    await harness.photo(alice, small_portrait, chat=group, caption="/style ink")
    assert alice.pseudonym in harness.ctx.memory.awaiting_consent
    await harness.removed_from(group, carol)
    assert ("groups", group.pseudonym) not in {(r[0], r[1]) for r in await harness.storage.dump()}
    assert alice.pseudonym not in harness.ctx.memory.awaiting_consent
