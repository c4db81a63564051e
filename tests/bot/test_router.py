"""The router: lanes (one person's backlog never holds anyone else, and it is bounded), and routes
(declared once, refused twice, chosen by chat kind)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.router import Router
from handlers.context import Context
from handlers.events import Address, Chat, ChatKind, CommandEvent, Membership, MembershipEvent, Person, PhotoEvent, TextEvent
from handlers.memory import Memory
from handlers.registry import Command, DuplicateRoute, Routes
from handlers.replies import SendText
from tests.fakes.platform import FakePlatform


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowPlatform(FakePlatform):
    """Answers one chat slowly (as Telegram does for a chat in flood wait)."""

    def __init__(self, slow: Address, seconds: float) -> None:
        super().__init__()
        self.slow, self.seconds = slow, seconds

    async def send(self, chat, reply):
        if chat == self.slow:
            await asyncio.sleep(self.seconds)
        return await super().send(chat, reply)


async def notices_sent(platform: FakePlatform, expected: int) -> None:
    """Wait (on a loaded machine the slow chat's sends take longer than they say) until the
    "slow down" notices have been sent, then check there are exactly ``expected``: their number
    is set by the memory's clock, not by timing."""
    deadline = time.monotonic() + 10
    while len(notices := [t for t in platform.texts() if "slow down" in t]) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # a surplus notice would have been sent by now
    assert len([t for t in platform.texts() if "slow down" in t]) == expected, notices


def person(name: str) -> tuple[Person, Chat]:
    who = Person(f"p-{name}", "en", Address("fake", f"id-{name}"))
    return who, Chat(f"c-{name}", ChatKind.PRIVATE, Address("fake", f"chat-{name}"))


def router_with(handled: list[str], memory: Memory | None = None, lane_limit: int = 20) -> Router:
    async def help_(event, ctx):
        await ctx.send(event.chat, SendText(f"help for {event.person.pseudonym}"))
        handled.append(f"{event.person.pseudonym}:{event.args}")

    async def erase(event, ctx):
        handled.append(f"{event.person.pseudonym}:erased")

    routes = Routes()

    @routes.on_membership
    async def removed(event, ctx):
        handled.append("removed")

    commands = (Command("help", "command.help", help_), Command("delete_my_data", "command.delete_my_data", erase, names=("forget_me",)))
    return Router(base_context(memory), routes=[routes], commands=commands, lane_limit=lane_limit)


def base_context(memory: Memory | None = None) -> Context:
    return Context(platform=None, store=None, queue=None, engine=None, catalogue=None, memory=memory or Memory())


def command(who: Person, chat: Chat, name: str = "help", args: str = "") -> CommandEvent:
    return CommandEvent(who, chat, None, name=name, args=args)


async def test_a_slow_persons_backlog_never_delays_another_person():
    flooder, flood_chat = person("flooder")
    other, other_chat = person("other")
    platform = SlowPlatform(flood_chat.address, 0.3)
    handled: list[str] = []
    router = router_with(handled)
    for i in range(100):
        await router.enqueue(command(flooder, flood_chat, args=str(i)), platform)
    begun = time.monotonic()
    await router.dispatch(command(other, other_chat), platform)
    assert time.monotonic() - begun < 0.2
    assert "p-other:" in handled
    await router.close(timeout=0.1)


async def test_enqueue_returns_before_the_event_is_handled():
    flooder, chat = person("flooder")
    platform = SlowPlatform(chat.address, 5.0)
    router = router_with([])
    begun = time.monotonic()
    for _ in range(5):
        await asyncio.wait_for(router.enqueue(command(flooder, chat), platform), timeout=0.05)
    assert time.monotonic() - begun < 0.1
    await router.close(timeout=0.1)


async def test_one_persons_events_keep_their_order():
    alice, chat = person("alice")
    platform = SlowPlatform(chat.address, 0.01)
    handled: list[str] = []
    router = router_with(handled)
    for i in range(10):
        await router.enqueue(command(alice, chat, args=str(i)), platform)
    await router.dispatch(command(alice, chat, args="last"), platform)
    assert handled == [f"p-alice:{i}" for i in range(10)] + ["p-alice:last"]


async def test_the_backlog_is_bounded_and_a_flooder_hears_one_slow_down_a_minute():
    flooder, chat = person("flooder")
    platform = SlowPlatform(chat.address, 0.05)
    handled: list[str] = []
    clock = Clock()
    router = router_with(handled, Memory(clock=clock), lane_limit=5)
    await router.enqueue(command(flooder, chat, args="0"), platform)
    await asyncio.sleep(0.01)  # being handled
    for i in range(1, 100):
        await router.enqueue(command(flooder, chat, args=str(i)), platform)
    assert router.backlog == 5  # one being handled, five waiting, the rest dropped
    assert router.dropped == 94
    await notices_sent(platform, 1)
    clock.now += 61  # a minute later, flooding again: one more notice
    while router.backlog:
        await asyncio.sleep(0.05)
    for i in range(20):
        await router.enqueue(command(flooder, chat, args=f"again{i}"), platform)
    await notices_sent(platform, 2)
    await router.close(timeout=0.1)
    # Only the events that fitted were handled, in order.
    assert [h for h in handled if ":again" not in h] == [f"p-flooder:{i}" for i in range(6)]


async def test_erasure_is_never_dropped_and_clears_what_waited_before_it():
    flooder, chat = person("flooder")
    platform = SlowPlatform(chat.address, 0.05)
    handled: list[str] = []
    router = router_with(handled, lane_limit=3)
    await router.enqueue(command(flooder, chat, args="0"), platform)
    await asyncio.sleep(0.01)  # being handled
    for i in range(1, 50):
        await router.enqueue(command(flooder, chat, args=str(i)), platform)
    await router.dispatch(command(flooder, chat, name="forget_me"), platform)  # an alias of /delete_my_data
    assert handled == ["p-flooder:0", "p-flooder:erased"]
    for i in range(50):
        await router.enqueue(command(flooder, chat, args=str(i)), platform)
    await router.dispatch(MembershipEvent(flooder, chat, None, change=Membership.BOT_REMOVED), platform)
    assert handled[-1] == "removed"


async def test_lanes_are_forgotten_when_empty():
    people = [person(f"p{i}") for i in range(50)]
    platform = FakePlatform()
    router = router_with([])
    for who, chat in people:
        await router.dispatch(command(who, chat), platform)
    assert router._lanes == {}


async def test_close_gives_running_events_a_bounded_time():
    flooder, chat = person("flooder")
    platform = SlowPlatform(chat.address, 60.0)
    handled: list[str] = []
    router = router_with(handled)
    for i in range(10):
        await router.enqueue(command(flooder, chat, args=str(i)), platform)
    await asyncio.sleep(0.01)
    begun = time.monotonic()
    await router.close(timeout=0.5)
    assert time.monotonic() - begun < 1.0
    assert handled == [] and router.backlog == 0
    await router.enqueue(command(flooder, chat), platform)  # closed: nothing more is taken
    assert router.backlog == 0


# -- routes: declared once, refused twice, chosen by chat kind ------------------------------------


def group_chat(name: str) -> Chat:
    return Chat(f"g-{name}", ChatKind.GROUP, Address("fake", f"group-{name}"))


async def nothing(event, ctx):
    pass


async def test_a_command_routed_twice_is_refused_at_start_up():
    twice = (Command("help", "command.help", nothing), Command("help", "command.help", private=nothing))
    with pytest.raises(DuplicateRoute, match="/help"):
        Router(base_context(), routes=[], commands=twice)
    # Another name for the same command counts too: "/forget_me" must not silently change hands.
    renamed = (Command("delete_my_data", "command.delete_my_data", nothing, names=("forget_me",)), Command("forget_me", "x", nothing))
    with pytest.raises(DuplicateRoute, match="/forget_me"):
        Router(base_context(), routes=[], commands=renamed)
    # A private and a group variant of one command are two routes, not a duplicate.
    Router(base_context(), routes=[], commands=(Command("help", "command.help", private=nothing), Command("help", "command.help", group=nothing)))


async def test_a_button_or_photo_routed_twice_is_refused_at_start_up():
    one, two = Routes(), Routes()
    one.button("pick")(nothing)
    two.button("pick")(nothing)
    with pytest.raises(DuplicateRoute, match="pick"):
        Router(base_context(), routes=[one, two], commands=())
    one, two = Routes(), Routes()
    one.on_photo()(nothing)  # every kind of chat
    two.on_photo(ChatKind.GROUP)(nothing)
    with pytest.raises(DuplicateRoute, match="photo in group chats"):
        Router(base_context(), routes=[one, two], commands=())


async def test_the_bots_own_routes_have_no_duplicate():
    Router(base_context())  # the real table and modules: refused at start-up if any route were doubled


async def test_private_and_group_variants_are_routed_by_chat_kind():
    handled: list[str] = []

    def recorder(label):
        async def handler(event, ctx):
            handled.append(label)

        return handler

    routes = Routes()
    routes.on_photo(ChatKind.PRIVATE)(recorder("private photo"))
    routes.on_text(ChatKind.PRIVATE)(recorder("private text"))
    commands = (
        Command("style", "command.style", private=recorder("favourite"), group=recorder("style the replied photo")),
        Command("privacy", "command.privacy", private=recorder("privacy")),
    )
    unknown = Command("", "", private=recorder("unknown private"), group=recorder("unknown group"))
    router = Router(base_context(), routes=[routes], commands=commands, unknown=unknown)
    platform = FakePlatform()
    who, private = person("alice")
    group = group_chat("friends")
    for chat in (private, group):
        await router.dispatch(command(who, chat, "style"), platform)
        await router.dispatch(command(who, chat, "privacy"), platform)
        await router.dispatch(PhotoEvent(who, chat, None, photos=()), platform)
        await router.dispatch(TextEvent(who, chat, None, text="hello"), platform)
    assert handled == [
        "favourite", "privacy", "private photo", "private text",
        # In the group: the group variant; a command with no group route is unknown there; a
        # photo or text with no group route is ignored.
        "style the replied photo", "unknown group",
    ]
    await router.close(timeout=0.1)
