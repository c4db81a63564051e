"""Telegram's client side: neutral replies → Bot API calls, photos fetched into memory.

`TelegramClient` is the `handlers.ports.Platform` for Telegram: it sends, edits, deletes, fetches
and asks who is an admin, and that is all. It holds PTB's `ExtBot` (PTB keeps the bot apart from
the `Application` that receives updates too), so a worker, which only answers, builds just this.
Flood control and transient network errors are retried on the way out; nothing about a person is
kept here, and raw ids live only inside opaque addresses (never logged, never stored).
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from dataclasses import dataclass
from datetime import timedelta

# What httpx would import only at its first request, imported with this module instead: the bot
# and its workers freeze what start-up imported out of the garbage collector before the first
# photo (bot/safeguards/heap.py); imported later, these ~65 modules are walked by every job's
# full collection.
import anyio._backends._asyncio  # noqa: F401
import h11  # noqa: F401
import httpcore._backends.anyio  # noqa: F401
from telegram import ChatMember, InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Message, ReplyParameters, WebAppInfo
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import ExtBot
from telegram.request import HTTPXRequest

from bot.settings import Settings, StartupError
from handlers.events import Address, Chat, MessageRef, Person, PhotoRef
from handlers.ports import DeliveryFailed, FetchFailed, PhotoTooLarge
from handlers.replies import AnswerButton, ChatAction, DeleteMessage, EditText, Keyboard, Reply, SendDocument, SendPhotos, SendText

log = logging.getLogger("darkroom.telegram")
PLATFORM = "telegram"
MAX_TEXT = 4096
SEND_ATTEMPTS = 5
LATER_EDITS = 20  # status edits kept per chat while it is in flood wait (the newest of each message)
FLOOD_PATIENCE = 60.0  # seconds one call may spend waiting out flood control before it gives up
CONNECT_ATTEMPTS = 5  # getMe at start-up, with back-off, while the Bot API cannot be reached


class InvalidAnswer(TelegramError):
    """The Bot API answered with something that is not JSON (a wrong TELEGRAM_API_URL, a proxy's
    error page)."""


class _Request(HTTPXRequest):
    """PTB's own HTTP client, except that an answer that is not JSON is not logged: PTB logs the
    whole body at ERROR, and a body from the Bot API carries names, ids and file ids."""

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict:
        try:
            return json.loads(payload.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            raise InvalidAnswer("the answer is not JSON") from None


@dataclass
class _FloodGate:
    """Telegram's flood control for one chat: nothing is sent there before ``until``. Sends to
    that chat wait here, and only they do: the rest of the bot carries on."""

    until: float = 0.0



class TelegramClient:
    """Sends to and fetches from the Bot API: the Platform port for Telegram."""

    name = PLATFORM
    has_buttons = True
    can_edit = True
    can_delete_messages = True

    def __init__(self, settings: Settings, rate_limiter=None) -> None:
        """``rate_limiter`` (a PTB BaseRateLimiter) keeps several processes within Telegram's
        limits together."""
        self.settings = settings
        api = settings.telegram_api_url
        self.bot = ExtBot(
            settings.telegram_bot_token,
            base_url=f"{api}/bot",
            base_file_url=f"{api}/file/bot",
            request=_Request(connection_pool_size=256, connect_timeout=10, read_timeout=30, write_timeout=30, media_write_timeout=60),
            get_updates_request=_Request(connection_pool_size=1),
            rate_limiter=rate_limiter,
        )
        self._gates: dict[int, _FloodGate] = {}
        self._later_edits: dict[int, dict[str, EditText]] = {}  # per chat in flood wait, per message
        self._editors: dict[int, asyncio.Task] = {}
        self._winding_down = asyncio.Event()
        self._give_up_at = float("inf")  # loop time after which nothing waits any more
        self.username = ""

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self, attempts: int = CONNECT_ATTEMPTS) -> None:
        """getMe, retried with back-off while the Bot API cannot be reached; a token or an
        address that cannot work stops start-up with a clear StartupError."""
        api = self.settings.telegram_api_url
        for attempt in range(1, attempts + 1):
            try:
                await self.bot.initialize()
                self.username = (self.bot.username or "").lower()
                return
            except InvalidToken:
                raise StartupError(f"the Bot API at {api} rejected TELEGRAM_BOT_TOKEN; check the token from @BotFather") from None
            except (NetworkError, TimedOut) as exc:
                if attempt == attempts:
                    raise StartupError(
                        f"could not reach the Bot API at {api} ({type(exc).__name__}); check TELEGRAM_API_URL and the network"
                    ) from None
                log.warning("the Bot API cannot be reached yet (%s); retrying", type(exc).__name__)
                await asyncio.sleep(2.0 ** attempt)
            except InvalidAnswer:
                raise StartupError(
                    f"the Bot API at {api} answered with something that is not JSON; check TELEGRAM_API_URL (and any proxy in between)"
                ) from None
            except TelegramError as exc:
                raise StartupError(
                    f"the Bot API at {api} refused to start the bot ({type(exc).__name__}); check TELEGRAM_API_URL and TELEGRAM_BOT_TOKEN"
                ) from None

    def wind_down(self, give_up_at: float) -> None:
        """Shutting down: from now on no send waits (for flood control or a retry) past
        ``give_up_at`` (event-loop time); it fails at once instead, so a chat in flood wait
        cannot hold the shutdown."""
        self._give_up_at = give_up_at
        self._winding_down.set()

    async def close(self) -> None:
        for task in list(self._editors.values()):
            task.cancel()
        await self.bot.shutdown()

    # -- the Platform port ----------------------------------------------------------------------

    async def fetch(self, photo: PhotoRef, max_bytes: int) -> bytearray:
        """Download into memory (never to disk)."""
        if photo.size and photo.size > max_bytes:
            raise PhotoTooLarge()
        try:
            file = await self.call(self.bot.get_file, photo.platform_ref)
        except DeliveryFailed as exc:
            raise FetchFailed(str(exc)) from None
        if file.file_size and file.file_size > max_bytes:
            raise PhotoTooLarge()
        for attempt in range(3):
            try:
                data = await file.download_as_bytearray()
                break
            except (TimedOut, NetworkError) as exc:
                if isinstance(exc, BadRequest) or attempt == 2:
                    raise FetchFailed(type(exc).__name__) from None
                await asyncio.sleep(1.0 * (attempt + 1))
        if len(data) > max_bytes:
            data[:] = bytes(len(data))
            raise PhotoTooLarge()
        return data

    def forget(self, person: Person) -> None:
        pass  # nothing about a person is kept in this adapter

    async def is_admin(self, chat: Chat, person: Person) -> bool:
        try:
            member = await self.call(self.bot.get_chat_member, int(chat.address.value), int(person.address.value))
        except DeliveryFailed:
            return False
        return member.status in (ChatMember.ADMINISTRATOR, ChatMember.OWNER)

    async def send(self, chat: Address, reply: Reply) -> MessageRef | None:
        bot = self.bot
        chat_id = int(chat.value)
        if isinstance(reply, SendText):
            texts = _split(reply.text)
            sent = None
            for i, text in enumerate(texts):
                last = i == len(texts) - 1
                sent = await self.call(
                    bot.send_message,
                    chat_id,
                    text,
                    chat=chat_id,
                    reply_markup=_markup(reply.buttons) if last else None,
                    reply_parameters=_reply_to(reply.reply_to) if i == 0 else None,
                )
            return self._sent(sent)
        if isinstance(reply, EditText):
            target_chat = int(reply.target.chat.value)
            if self._flood_wait(target_chat) > 0 or target_chat in self._later_edits:
                self._edit_later(target_chat, reply)
                return reply.target
            await self._edit(reply)
            return reply.target
        if isinstance(reply, SendPhotos):
            return await self._send_photos(chat_id, reply)
        if isinstance(reply, DeleteMessage):
            ids = [int(i) for i in reply.target.message_id.split(",")]  # an album is several messages
            try:
                if len(ids) == 1:
                    await self.call(bot.delete_message, int(reply.target.chat.value), ids[0], chat=int(reply.target.chat.value))
                else:
                    await self.call(bot.delete_messages, int(reply.target.chat.value), ids, chat=int(reply.target.chat.value))
            except DeliveryFailed as exc:
                # Older than 48 h, already gone, or no rights: tolerated, logged without data.
                log.info("could not delete a message: %s", _reason(exc))
            return None
        if isinstance(reply, ChatAction):
            if self._flood_wait(chat_id) > 0:
                return None  # purely cosmetic: not worth a place in the chat's flood wait
            try:
                await self.call(bot.send_chat_action, chat_id, reply.action, attempts=1, chat=chat_id)
            except DeliveryFailed:
                pass  # purely cosmetic
            return None
        if isinstance(reply, AnswerButton):
            if reply.handle:
                try:
                    await self.call(
                        bot.answer_callback_query, reply.handle, text=reply.text or None, show_alert=reply.alert, attempts=2
                    )
                except DeliveryFailed:
                    pass  # the press is older than Telegram keeps it answerable
            return None
        if isinstance(reply, SendDocument):
            sent = await self.call(
                bot.send_document, chat_id, reply.data, filename=reply.filename, caption=reply.caption, chat=chat_id
            )
            return self._sent(sent)
        raise TypeError(f"unknown reply {type(reply).__name__}")

    async def _edit(self, reply: EditText) -> None:
        try:
            await self.call(
                self.bot.edit_message_text,
                reply.text[:MAX_TEXT],
                chat=int(reply.target.chat.value),
                chat_id=int(reply.target.chat.value),
                message_id=int(reply.target.message_id),
                reply_markup=_markup(reply.buttons),
            )
        except DeliveryFailed as exc:
            if "not modified" not in str(exc).lower():
                raise

    def _edit_later(self, chat_id: int, reply: EditText) -> None:
        """An edit (a status line) for a chat in flood wait: its sender does not wait for it.
        Only the newest text of each message is kept, and sent when the chat is free again, so
        that a job does not hold a queue worker (shared by everyone) through its chat's wait.
        Edits that come while older ones wait queue behind them, never overtaking them."""
        edits = self._later_edits.setdefault(chat_id, {})
        edits.pop(reply.target.message_id, None)
        edits[reply.target.message_id] = reply
        while len(edits) > LATER_EDITS:
            edits.pop(next(iter(edits)))
        if chat_id not in self._editors:
            task = asyncio.create_task(self._send_later_edits(chat_id), name="darkroom-later-edits")
            self._editors[chat_id] = task

    async def _send_later_edits(self, chat_id: int) -> None:
        try:
            edits = self._later_edits.get(chat_id, {})
            while edits:
                reply = edits.pop(next(iter(edits)))
                try:
                    await self._edit(reply)
                except DeliveryFailed as exc:
                    log.info("could not edit a status message: %s", exc)
        finally:
            self._later_edits.pop(chat_id, None)
            self._editors.pop(chat_id, None)

    async def _send_photos(self, chat_id: int, reply: SendPhotos) -> MessageRef | None:
        bot = self.bot
        if len(reply.photos) == 1:
            photo = reply.photos[0]
            sent = await self.call(
                bot.send_photo,
                chat_id,
                photo.jpeg,
                caption=photo.caption or None,
                reply_markup=_markup(reply.buttons),
                reply_parameters=_reply_to(reply.reply_to),
                filename="darkroom.jpg",
                chat=chat_id,
            )
            return self._sent(sent)
        media = [InputMediaPhoto(p.jpeg, caption=p.caption or None, filename=f"darkroom-{i + 1}.jpg") for i, p in enumerate(reply.photos)]
        sent = await self.call(bot.send_media_group, chat_id, media, reply_parameters=_reply_to(reply.reply_to), chat=chat_id)
        if reply.buttons:
            # An album cannot carry buttons: offer them right below it.
            await self.call(bot.send_message, chat_id, "⬆", reply_markup=_markup(reply.buttons), chat=chat_id)
        if not sent:
            return None
        # One reference for the whole album, so that deleting it later deletes every photo.
        return MessageRef(address_of(chat_id), ",".join(str(m.message_id) for m in sent))

    @staticmethod
    def _sent(message: Message | None) -> MessageRef | None:
        return None if message is None else MessageRef(address_of(message.chat.id), str(message.message_id))

    async def call(self, method, *args, attempts: int = SEND_ATTEMPTS, chat: int | None = None, **kwargs):
        """Call a Bot API method; wait out flood control and retry transient network errors
        with back-off. A reply that still cannot be delivered raises DeliveryFailed.

        Flood control is per chat (``chat``): a chat Telegram asked us to wait for gets a gate,
        and only sends to that chat wait at it (up to FLOOD_PATIENCE in all, without using up
        attempts); everyone else's replies go on. While shutting down, nothing waits past the
        give-up time."""
        delay = 1.0
        attempt = 0
        flood_waited = 0.0
        while True:
            wait = self._flood_wait(chat)
            if wait > 0:
                if flood_waited + wait > FLOOD_PATIENCE:
                    raise DeliveryFailed("flood control")
                flood_waited += wait
                await self._pause(wait, "flood control")
            attempt += 1
            try:
                if self._winding_down.is_set():
                    remaining = self._give_up_at - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        raise DeliveryFailed("shutting down")
                    return await asyncio.wait_for(method(*args, **kwargs), remaining)
                return await method(*args, **kwargs)
            except RetryAfter as exc:
                with warnings.catch_warnings():  # PTB 22 warns that the type will change
                    warnings.simplefilter("ignore")
                    retry_after = exc.retry_after
                wait = retry_after.total_seconds() if isinstance(retry_after, timedelta) else float(retry_after)
                log.info("flood control on one chat: its replies wait %.0fs (%s)", wait, method.__name__)
                if chat is None:
                    if attempt >= attempts or flood_waited + wait > FLOOD_PATIENCE:
                        raise DeliveryFailed("flood control") from None
                    flood_waited += wait
                    await self._pause(wait, "flood control")
                else:
                    attempt -= 1  # waiting at the chat's gate is not a failed attempt
                    self._close_gate(chat, wait)
            except (BadRequest, Forbidden) as exc:
                raise DeliveryFailed(_reason(exc)) from None
            except (TimeoutError, TimedOut, NetworkError) as exc:
                if attempt >= attempts:
                    raise DeliveryFailed(type(exc).__name__) from None
                log.info("transient %s on %s, retrying in %.0fs", type(exc).__name__, method.__name__, delay)
                await self._pause(delay, type(exc).__name__)
                delay = min(delay * 2, 30.0)
            except TelegramError as exc:
                raise DeliveryFailed(type(exc).__name__) from None

    def _flood_wait(self, chat: int | None) -> float:
        """Seconds before anything may be sent to ``chat`` again (0 when it is free)."""
        if chat is None:
            return 0.0
        gate = self._gates.get(chat)
        if gate is None:
            return 0.0
        wait = gate.until - asyncio.get_running_loop().time()
        if wait <= 0:
            del self._gates[chat]
            return 0.0
        return wait

    def _close_gate(self, chat: int, seconds: float) -> None:
        now = asyncio.get_running_loop().time()
        until = now + seconds
        if len(self._gates) > 1000:  # forget the gates that opened long ago
            for old in [c for c, g in self._gates.items() if g.until <= now]:
                del self._gates[old]
        gate = self._gates.setdefault(chat, _FloodGate())
        gate.until = max(gate.until, until)

    async def _pause(self, seconds: float, why: str) -> None:
        """Sleep ``seconds``, unless shutting down would cut the sleep short: then fail now."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        if not self._winding_down.is_set():
            try:
                await asyncio.wait_for(self._winding_down.wait(), seconds)
                # (woken early: the bot began to shut down while this send waited)
            except TimeoutError:
                return
        if end > self._give_up_at:
            raise DeliveryFailed(f"{why}; shutting down")
        await asyncio.sleep(max(0.0, end - loop.time()))


def address_of(raw_id: int) -> Address:
    return Address(PLATFORM, str(raw_id))


def _markup(keyboard: Keyboard) -> InlineKeyboardMarkup | None:
    if not keyboard:
        return None
    return InlineKeyboardMarkup([[_button(b) for b in row] for row in keyboard])


def _button(button) -> InlineKeyboardButton:
    if button.web_app:  # opens the on-device page inside Telegram
        return InlineKeyboardButton(button.label, web_app=WebAppInfo(button.web_app))
    return InlineKeyboardButton(button.label, callback_data=button.data)


def _reply_to(ref: MessageRef | None) -> ReplyParameters | None:
    if ref is None:
        return None
    return ReplyParameters(message_id=int(ref.message_id), allow_sending_without_reply=True)


def _split(text: str) -> list[str]:
    if len(text) <= MAX_TEXT:
        return [text]
    parts, current = [], ""
    for line in text.split("\n"):
        while len(line) > MAX_TEXT:
            parts.append(line[:MAX_TEXT])
            line = line[MAX_TEXT:]
        if len(current) + len(line) + 1 > MAX_TEXT:
            parts.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        parts.append(current)
    return parts


def _reason(exc: Exception) -> str:
    """The kind of a Bot API refusal, without echoing anything the API may have quoted back."""
    text = str(exc).lower()
    for known in ("message to delete not found", "message can't be deleted", "not modified", "chat not found",
                  "bot was blocked", "not enough rights", "message to edit not found", "query is too old"):
        if known in text:
            return known
    return type(exc).__name__
