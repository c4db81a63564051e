"""Telegram adapter (python-telegram-bot): updates → neutral events, neutral replies → Bot API.

This is the only module that imports `telegram`. It pseudonymizes people and chats on the way
in, keeps raw ids only inside opaque addresses (never logged, never stored), downloads photos
into memory only, and retries flood control and transient network errors on the way out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from telegram import (
    BotCommand,
    ChatMember,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    MenuButtonWebApp,
    Message,
    MessageOriginUser,
    ReplyParameters,
    Update,
    WebAppInfo,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler
from telegram.request import HTTPXRequest

from handlers.commands import MENUS
from handlers.context import where
from handlers.events import (
    Address,
    ButtonEvent,
    Chat,
    ChatKind,
    CommandEvent,
    Event,
    Membership,
    MembershipEvent,
    MessageRef,
    Person,
    PhotoEvent,
    PhotoRef,
    TextEvent,
    UnsupportedEvent,
)
from handlers.ports import DeliveryFailed, FetchFailed, PhotoTooLarge
from handlers.replies import (
    AnswerButton,
    ChatAction,
    DeleteMessage,
    EditText,
    Keyboard,
    Reply,
    SendDocument,
    SendPhotos,
    SendText,
)
from handlers.texts import language_of, t

from .pseudonym import Pseudonymizer
from .settings import Settings, StartupError

log = logging.getLogger("darkroom.telegram")
PLATFORM = "telegram"
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
ALBUM_QUIET = 1.0  # seconds without a new album part before the album is handled
MAX_TEXT = 4096
SEND_ATTEMPTS = 5
ALBUM_MAX = 10  # Telegram's own limit on the parts of one album
LATER_EDITS = 20  # status edits kept per chat while it is in flood wait (the newest of each message)
FLOOD_PATIENCE = 60.0  # seconds one call may spend waiting out flood control before it gives up

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


@dataclass
class _Album:
    parts: list[Message] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class TelegramPlatform:
    name = PLATFORM
    has_buttons = True
    can_edit = True
    can_delete_messages = True

    def __init__(self, settings: Settings, pseudonymize: Pseudonymizer, dispatch, rate_limiter=None) -> None:
        """``dispatch(event, platform)`` is the router's entry point; ``rate_limiter`` (a PTB
        BaseRateLimiter) keeps several processes within Telegram's limits together."""
        self.settings = settings
        self._pseudonymize = pseudonymize
        self._dispatch = dispatch
        api = settings.telegram_api_url
        builder = (
            ApplicationBuilder()
            .token(settings.telegram_bot_token)
            .base_url(f"{api}/bot")
            .base_file_url(f"{api}/file/bot")
            # Our update handler only translates and hands the event to the router's lane for
            # that person, so these slots are never held while one chat waits (slow, or in
            # flood wait): a flood from one person cannot use them up.
            .concurrent_updates(256)
            .request(_Request(connection_pool_size=256, connect_timeout=10, read_timeout=30, write_timeout=30, media_write_timeout=60))
            .get_updates_request(_Request(connection_pool_size=1))
        )
        if rate_limiter is not None:
            builder = builder.rate_limiter(rate_limiter)
        if settings.telegram_mode == "webhook":
            builder = builder.updater(None)  # our aiohttp server receives the updates
        self.app: Application = builder.build()
        self.app.add_handler(TypeHandler(Update, self._on_update))
        self.app.add_error_handler(self._on_error)
        self._albums: dict[tuple[int, str], _Album] = defaultdict(_Album)
        self._album_tasks: set[asyncio.Task] = set()
        self._gates: dict[int, _FloodGate] = {}
        self._later_edits: dict[int, dict[str, EditText]] = {}  # per chat in flood wait, per message
        self._editors: dict[int, asyncio.Task] = {}
        self._winding_down = asyncio.Event()
        self._give_up_at = float("inf")  # loop time after which nothing waits any more
        self.username = ""

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._initialize()
        self.username = (self.app.bot.username or "").lower()
        await self._cosmetics()
        if self.settings.telegram_mode == "webhook":
            try:
                await self._call(
                    self.app.bot.set_webhook,
                    url=self.settings.telegram_webhook_url,
                    secret_token=self.settings.telegram_webhook_secret,
                    allowed_updates=ALLOWED_UPDATES,
                )
            except DeliveryFailed as exc:
                raise StartupError(f"Telegram refused the webhook URL ({exc}); check TELEGRAM_WEBHOOK_URL") from None
            log.info("webhook registered")
        await self.app.start()
        if self.settings.telegram_mode == "polling":
            await self.app.updater.start_polling(allowed_updates=ALLOWED_UPDATES, error_callback=self._polling_error)
            log.info("polling for updates")

    async def _initialize(self, attempts: int = 5) -> None:
        """getMe, retried with back-off while the Bot API cannot be reached."""
        api = self.settings.telegram_api_url
        for attempt in range(1, attempts + 1):
            try:
                await self.app.initialize()
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

    async def stop_receiving(self) -> None:
        """No new updates; the bot can still send (jobs finishing, apologies)."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()

    def wind_down(self, give_up_at: float) -> None:
        """Shutting down: from now on no send waits (for flood control or a retry) past
        ``give_up_at`` (event-loop time); it fails at once instead, so a chat in flood wait
        cannot hold the shutdown."""
        self._give_up_at = give_up_at
        self._winding_down.set()

    async def close(self) -> None:
        await self.stop_receiving()
        for task in [*self._album_tasks, *self._editors.values()]:
            task.cancel()
        await self.app.shutdown()

    async def _cosmetics(self) -> None:
        """Commands and descriptions. A failure here is a warning, never a reason to stop."""
        for language, commands in MENUS.items():
            try:
                await self.app.bot.set_my_commands(
                    [BotCommand(c, d) for c, d in commands], language_code=None if language == "en" else language
                )
            except Exception as exc:
                log.warning("could not set the bot's command list (%s): %s; carrying on", language, type(exc).__name__)
        if self.settings.webapp_url:
            try:
                await self.app.bot.set_chat_menu_button(
                    menu_button=MenuButtonWebApp(t("webapp.menu", "en"), WebAppInfo(self.settings.webapp_url))
                )
            except Exception as exc:
                log.warning("could not set the on-device page menu button: %s; carrying on", type(exc).__name__)
        try:
            await self.app.bot.set_my_short_description(
                "Styles your selfie on this server after asking for consent, and keeps nothing."
            )
        except Exception as exc:
            log.warning("could not set the bot's description: %s; carrying on", type(exc).__name__)

    def _polling_error(self, exc: TelegramError) -> None:
        log.warning("polling error (will retry): %s", type(exc).__name__)

    async def process_webhook_update(self, data: dict) -> None:
        """An update posted to /telegram (secret already checked by the HTTP server)."""
        update = Update.de_json(data, self.app.bot)
        await self.app.update_queue.put(update)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        exc = context.error
        log.error("telegram update failed: %s at %s", type(exc).__name__, where(exc) if exc else "?")

    # -- updates → events ------------------------------------------------------------------

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        if message is not None and message.media_group_id and (message.photo or message.document):
            self._collect_album(message)
            return
        event = self.translate(update)
        if event is not None:
            await self._dispatch(event, self)

    def translate(self, update: Update) -> Event | None:
        if update.callback_query is not None:
            return self._button(update)
        if update.my_chat_member is not None:
            return self._membership(update)
        message = update.message
        if message is None or message.from_user is None or message.from_user.is_bot:
            return None
        if message.sender_chat is not None:  # anonymous admins and channels: no person to ask
            return None
        chat = self._chat(message.chat)
        if chat is None:
            return None
        person = self._person(message.from_user)
        ref = self._ref(message)
        if message.photo or (message.document and _is_image(message.document.mime_type)):
            caption = self._own_caption(message.caption)
            if caption is None:
                return None  # "/style@other_bot" as a caption: for another bot
            return PhotoEvent(
                person,
                chat,
                ref,
                photos=(self._photo_ref(message),),
                caption=caption,
                from_someone_else=_from_someone_else(message),
            )
        if message.document is not None:
            return UnsupportedEvent(person, chat, ref, what="document")
        text = message.text
        if text is not None:
            if text.startswith("/"):
                return self._command(message, person, chat, ref)
            return TextEvent(person, chat, ref, text=text)
        if message.new_chat_members or message.left_chat_member or message.group_chat_created:
            return None
        return UnsupportedEvent(person, chat, ref, what="message")

    def _command(self, message: Message, person: Person, chat: Chat, ref: MessageRef) -> CommandEvent | None:
        head, _, args = message.text.partition(" ")
        name, _, target = head[1:].partition("@")
        if target and target.lower() != self.username:
            return None  # addressed to another bot in the group
        replied = message.reply_to_message
        replied_photos: tuple[PhotoRef, ...] = ()
        replied_author = replied_message = None
        replied_from_someone_else = False
        if replied is not None:
            if replied.photo or (replied.document and _is_image(replied.document.mime_type)):
                replied_photos = (self._photo_ref(replied),)
                replied_from_someone_else = _from_someone_else(replied)
            if replied.from_user is not None and not replied.from_user.is_bot and replied.sender_chat is None:
                replied_author = self._person(replied.from_user)
            replied_message = self._ref(replied)
        return CommandEvent(
            person,
            chat,
            ref,
            name=name.lower(),
            args=args.strip(),
            replied_photos=replied_photos,
            replied_author=replied_author,
            replied_message=replied_message,
            replied_from_someone_else=replied_from_someone_else,
        )

    def _button(self, update: Update) -> ButtonEvent | None:
        query = update.callback_query
        message = query.message
        if message is None or query.data is None:
            return None
        chat = self._chat(message.chat)
        if chat is None:
            return None
        ref = MessageRef(_address(message.chat.id), str(message.message_id))
        return ButtonEvent(self._person(query.from_user), chat, ref, data=query.data, answer_handle=query.id)

    def _membership(self, update: Update) -> MembershipEvent | None:
        change = update.my_chat_member
        if change.chat.type not in (ChatType.GROUP, ChatType.SUPERGROUP):
            return None
        if change.new_chat_member.status not in (ChatMember.LEFT, ChatMember.BANNED):
            return None
        chat = self._chat(change.chat)
        return MembershipEvent(self._person(change.from_user), chat, None, change=Membership.BOT_REMOVED)

    def _collect_album(self, message: Message) -> None:
        key = (message.chat.id, message.media_group_id)
        album = self._albums[key]
        if len(album.parts) >= ALBUM_MAX:
            return  # more parts than Telegram allows in one album: not a real album
        album.parts.append(message)
        if album.timer is not None:
            album.timer.cancel()
        loop = asyncio.get_running_loop()
        album.timer = loop.call_later(ALBUM_QUIET, self._album_ready, key)

    def _album_ready(self, key) -> None:
        album = self._albums.pop(key, None)
        if album is None or not album.parts:
            return
        task = asyncio.create_task(self._dispatch_album(album.parts))
        self._album_tasks.add(task)
        task.add_done_callback(self._album_tasks.discard)

    async def _dispatch_album(self, parts: list[Message]) -> None:
        parts.sort(key=lambda m: m.message_id)
        first = parts[0]
        if first.from_user is None or first.sender_chat is not None:
            return
        chat = self._chat(first.chat)
        if chat is None:
            return
        caption = self._own_caption(next((m.caption for m in parts if m.caption), ""))
        if caption is None:
            return
        event = PhotoEvent(
            self._person(first.from_user),
            chat,
            self._ref(first),
            photos=tuple(self._photo_ref(m) for m in parts),
            caption=caption,
            more_messages=tuple(self._ref(m) for m in parts[1:]),
            from_someone_else=any(_from_someone_else(m) for m in parts),
        )
        try:
            await self._dispatch(event, self)
        except Exception as exc:
            log.error("album handling failed: %s at %s", type(exc).__name__, where(exc))

    # -- translation helpers -------------------------------------------------------------------

    def _own_caption(self, caption: str | None) -> str | None:
        """A caption with the bot's own @name taken off its command ("/style@darkroom_bot ink"
        reads "/style ink"); None when the command is addressed to another bot."""
        caption = caption or ""
        words = caption.split(maxsplit=1)
        if not words or not words[0].startswith("/") or "@" not in words[0]:
            return caption
        command, _, target = words[0].partition("@")
        if target.lower() != self.username:
            return None
        return " ".join([command, *words[1:]])

    def _person(self, user) -> Person:
        return Person(
            pseudonym=self._pseudonymize(PLATFORM, "user", user.id),
            language=language_of(user.language_code),
            address=_address(user.id),
        )

    def _chat(self, chat) -> Chat | None:
        if chat.type == ChatType.PRIVATE:
            kind = ChatKind.PRIVATE
        elif chat.type in (ChatType.GROUP, ChatType.SUPERGROUP):
            kind = ChatKind.GROUP
        else:
            return None  # channels
        return Chat(self._pseudonymize(PLATFORM, "chat", chat.id), kind, _address(chat.id))

    @staticmethod
    def _ref(message: Message) -> MessageRef:
        return MessageRef(_address(message.chat.id), str(message.message_id))

    def _photo_ref(self, message: Message) -> PhotoRef:
        if message.photo:
            size = _best_size(message.photo, self.settings.max_side)
            return PhotoRef(size.file_id, size=size.file_size, mime="image/jpeg")
        document = message.document
        return PhotoRef(document.file_id, size=document.file_size, mime=document.mime_type or "", is_document=True)

    # -- the Platform port ----------------------------------------------------------------------

    async def fetch(self, photo: PhotoRef, max_bytes: int) -> bytearray:
        """Download into memory (never to disk)."""
        if photo.size and photo.size > max_bytes:
            raise PhotoTooLarge()
        try:
            file = await self._call(self.app.bot.get_file, photo.platform_ref)
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
            member = await self._call(self.app.bot.get_chat_member, int(chat.address.value), int(person.address.value))
        except DeliveryFailed:
            return False
        return member.status in (ChatMember.ADMINISTRATOR, ChatMember.OWNER)

    async def send(self, chat: Address, reply: Reply) -> MessageRef | None:
        bot = self.app.bot
        chat_id = int(chat.value)
        if isinstance(reply, SendText):
            texts = _split(reply.text)
            sent = None
            for i, text in enumerate(texts):
                last = i == len(texts) - 1
                sent = await self._call(
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
                    await self._call(bot.delete_message, int(reply.target.chat.value), ids[0], chat=int(reply.target.chat.value))
                else:
                    await self._call(bot.delete_messages, int(reply.target.chat.value), ids, chat=int(reply.target.chat.value))
            except DeliveryFailed as exc:
                # Older than 48 h, already gone, or no rights: tolerated, logged without data.
                log.info("could not delete a message: %s", _reason(exc))
            return None
        if isinstance(reply, ChatAction):
            if self._flood_wait(chat_id) > 0:
                return None  # purely cosmetic: not worth a place in the chat's flood wait
            try:
                await self._call(bot.send_chat_action, chat_id, reply.action, attempts=1, chat=chat_id)
            except DeliveryFailed:
                pass  # purely cosmetic
            return None
        if isinstance(reply, AnswerButton):
            if reply.handle:
                try:
                    await self._call(
                        bot.answer_callback_query, reply.handle, text=reply.text or None, show_alert=reply.alert, attempts=2
                    )
                except DeliveryFailed:
                    pass  # the press is older than Telegram keeps it answerable
            return None
        if isinstance(reply, SendDocument):
            sent = await self._call(
                bot.send_document, chat_id, reply.data, filename=reply.filename, caption=reply.caption, chat=chat_id
            )
            return self._sent(sent)
        raise TypeError(f"unknown reply {type(reply).__name__}")

    async def _edit(self, reply: EditText) -> None:
        try:
            await self._call(
                self.app.bot.edit_message_text,
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
        bot = self.app.bot
        if len(reply.photos) == 1:
            photo = reply.photos[0]
            sent = await self._call(
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
        sent = await self._call(bot.send_media_group, chat_id, media, reply_parameters=_reply_to(reply.reply_to), chat=chat_id)
        if reply.buttons:
            # An album cannot carry buttons: offer them right below it.
            await self._call(bot.send_message, chat_id, "⬆", reply_markup=_markup(reply.buttons), chat=chat_id)
        if not sent:
            return None
        # One reference for the whole album, so that deleting it later deletes every photo.
        return MessageRef(_address(chat_id), ",".join(str(m.message_id) for m in sent))

    @staticmethod
    def _sent(message: Message | None) -> MessageRef | None:
        return None if message is None else MessageRef(_address(message.chat.id), str(message.message_id))

    async def _call(self, method, *args, attempts: int = SEND_ATTEMPTS, chat: int | None = None, **kwargs):
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
                    wait = exc.retry_after
                wait = wait.total_seconds() if isinstance(wait, timedelta) else float(wait)
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
            except (TimedOut, NetworkError, asyncio.TimeoutError) as exc:
                if attempt >= attempts:
                    raise DeliveryFailed(type(exc).__name__) from None
                log.info("transient %s on %s, retrying in %.0fs", type(exc).__name__, method.__name__, delay)
                await self._pause(delay, type(exc).__name__)
                delay = min(delay * 2, 30.0)
            except TelegramError as exc:
                raise DeliveryFailed(type(exc).__name__) from None

    def _flood_wait(self, chat: int | None) -> float:
        """Seconds before anything may be sent to ``chat`` again (0 when it is free)."""
        gate = self._gates.get(chat) if chat is not None else None
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
            except asyncio.TimeoutError:
                return
        if end > self._give_up_at:
            raise DeliveryFailed(f"{why}; shutting down")
        await asyncio.sleep(max(0.0, end - loop.time()))


def _address(raw_id: int) -> Address:
    return Address(PLATFORM, str(raw_id))


def _from_someone_else(message: Message) -> bool:
    """Forwarded from anyone but the sender: another person, a hidden account, a group or a
    channel. Only a forward of the sender's own message keeps them the author."""
    origin = message.forward_origin
    if origin is None:
        return False
    sender = message.from_user
    return not (isinstance(origin, MessageOriginUser) and sender is not None and origin.sender_user.id == sender.id)


def _is_image(mime: str | None) -> bool:
    return bool(mime) and mime.lower().startswith("image/")


def _best_size(sizes, max_side: int):
    """The smallest size that still covers our working size, else the largest there is."""
    ordered = sorted(sizes, key=lambda s: s.width * s.height)
    for size in ordered:
        if max(size.width, size.height) >= max_side:
            return size
    return ordered[-1]


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
