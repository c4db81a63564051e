"""Telegram's receiving side: updates → neutral events, handed to the router.

`TelegramReceiver` owns PTB's `Application` (long polling, or updates posted to our own
/telegram webhook route), translates each update into a neutral event, gathers albums, and
registers the command menu at start-up. It pseudonymizes people and chats on the way in. It
never sends: every reply goes through the `TelegramClient` it is given, which is also what the
router's handlers see as the platform.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field

from telegram import BotCommand, CallbackQuery, ChatMember, ChatMemberUpdated, MenuButtonWebApp, Message, MessageOriginUser, Update, WebAppInfo
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler

from bot.platforms.telegram.client import PLATFORM, TelegramClient, address_of
from bot.safeguards.pseudonym import Pseudonymizer
from bot.settings import StartupError
from handlers.commands import MENUS
from handlers.context import where
from handlers.events import (
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
from handlers.ports import DeliveryFailed
from handlers.texts import language_of, t

log = logging.getLogger("darkroom.telegram")
ALLOWED_UPDATES = ["message", "callback_query", "my_chat_member"]
ALBUM_QUIET = 1.0  # seconds without a new album part before the album is handled
ALBUM_MAX = 10  # Telegram's own limit on the parts of one album


@dataclass
class _Album:
    parts: list[Message] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None



class TelegramReceiver:
    """Receives updates for one bot and hands each, as a neutral event, to ``dispatch(event,
    client)``: the router's entry point."""

    def __init__(self, settings, client: TelegramClient, pseudonymize: Pseudonymizer, dispatch) -> None:
        self.settings = settings
        self.client = client
        self._pseudonymize = pseudonymize
        self._dispatch = dispatch
        builder = (
            ApplicationBuilder()
            .bot(client.bot)
            # Our update handler only translates and hands the event to the router's lane for
            # that person, so these slots are never held while one chat waits (slow, or in
            # flood wait): a flood from one person cannot use them up.
            .concurrent_updates(256)
        )
        if settings.telegram_mode == "webhook":
            builder = builder.updater(None)  # our aiohttp server receives the updates
        self.app: Application = builder.build()
        self.app.add_handler(TypeHandler(Update, self._on_update))
        self.app.add_error_handler(self._on_error)
        self._albums: dict[tuple[int, str], _Album] = defaultdict(_Album)
        self._album_tasks: set[asyncio.Task] = set()

    @property
    def username(self) -> str:
        return self.client.username

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.client.connect()
        await self.app.initialize()
        await self._cosmetics()
        if self.settings.telegram_mode == "webhook":
            try:
                await self.client.call(
                    self.client.bot.set_webhook,
                    url=self.settings.telegram_webhook_url,
                    secret_token=self.settings.telegram_webhook_secret,
                    allowed_updates=ALLOWED_UPDATES,
                )
            except DeliveryFailed as exc:
                raise StartupError(f"Telegram refused the webhook URL ({exc}); check TELEGRAM_WEBHOOK_URL") from None
            log.info("webhook registered")
        await self.app.start()
        if self.settings.telegram_mode == "polling" and self.app.updater is not None:  # built with one
            await self.app.updater.start_polling(allowed_updates=ALLOWED_UPDATES, error_callback=self._polling_error)
            log.info("polling for updates")

    async def stop_receiving(self) -> None:
        """No new updates; the bot can still send (jobs finishing, apologies)."""
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self.app.running:
            await self.app.stop()


    async def close(self) -> None:
        await self.stop_receiving()
        for task in list(self._album_tasks):
            task.cancel()
        await self.app.shutdown()

    async def _cosmetics(self) -> None:
        """Commands and descriptions. A failure here is a warning, never a reason to stop."""
        for language, commands in MENUS.items():
            try:
                await self.client.bot.set_my_commands(
                    [BotCommand(c, d) for c, d in commands], language_code=None if language == "en" else language
                )
            except Exception as exc:
                log.warning("could not set the bot's command list (%s): %s; carrying on", language, type(exc).__name__)
        if self.settings.webapp_url:
            try:
                await self.client.bot.set_chat_menu_button(
                    menu_button=MenuButtonWebApp(t("webapp.menu", "en"), WebAppInfo(self.settings.webapp_url))
                )
            except Exception as exc:
                log.warning("could not set the on-device page menu button: %s; carrying on", type(exc).__name__)
        try:
            await self.client.bot.set_my_short_description(
                "Styles your selfie on this server after asking for consent, and keeps nothing."
            )
        except Exception as exc:
            log.warning("could not set the bot's description: %s; carrying on", type(exc).__name__)

    def _polling_error(self, exc: TelegramError) -> None:
        log.warning("polling error (will retry): %s", type(exc).__name__)

    async def process_webhook_update(self, data: dict) -> None:
        """An update posted to /telegram (secret already checked by the HTTP server)."""
        update = Update.de_json(data, self.client.bot)
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
            await self._dispatch(event, self.client)

    def translate(self, update: Update) -> Event | None:
        if update.callback_query is not None:
            return self._button(update.callback_query)
        if update.my_chat_member is not None:
            return self._membership(update.my_chat_member)
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
        head, _, args = (message.text or "").partition(" ")
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

    def _button(self, query: CallbackQuery) -> ButtonEvent | None:
        message = query.message
        if message is None or query.data is None:
            return None
        chat = self._chat(message.chat)
        if chat is None:
            return None
        ref = MessageRef(address_of(message.chat.id), str(message.message_id))
        return ButtonEvent(self._person(query.from_user), chat, ref, data=query.data, answer_handle=query.id)

    def _membership(self, change: ChatMemberUpdated) -> MembershipEvent | None:
        if change.new_chat_member.status not in (ChatMember.LEFT, ChatMember.BANNED):
            return None
        chat = self._chat(change.chat)
        if chat is None or chat.kind != ChatKind.GROUP:
            return None
        return MembershipEvent(self._person(change.from_user), chat, None, change=Membership.BOT_REMOVED)

    def _collect_album(self, message: Message) -> None:
        key = (message.chat.id, message.media_group_id or "")
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
            await self._dispatch(event, self.client)
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
            address=address_of(user.id),
        )

    def _chat(self, chat) -> Chat | None:
        if chat.type == ChatType.PRIVATE:
            kind = ChatKind.PRIVATE
        elif chat.type in (ChatType.GROUP, ChatType.SUPERGROUP):
            kind = ChatKind.GROUP
        else:
            return None  # channels
        return Chat(self._pseudonymize(PLATFORM, "chat", chat.id), kind, address_of(chat.id))

    @staticmethod
    def _ref(message: Message) -> MessageRef:
        return MessageRef(address_of(message.chat.id), str(message.message_id))

    def _photo_ref(self, message: Message) -> PhotoRef:
        if message.photo:
            size = _best_size(message.photo, self.settings.max_side)
            return PhotoRef(size.file_id, size=size.file_size, mime="image/jpeg")
        document = message.document
        assert document is not None  # a photo message without sizes is a document
        return PhotoRef(document.file_id, size=document.file_size, mime=document.mime_type or "", is_document=True)


def _from_someone_else(message: Message) -> bool:
    """Forwarded from anyone but the sender: another person, a hidden account, a group or a
    channel. Only a forward of the sender's own message keeps them the author."""
    origin = message.forward_origin
    if origin is None:
        return False
    sender = message.from_user
    return not (isinstance(origin, MessageOriginUser) and sender is not None and origin.sender_user.id == sender.id)


def _is_image(mime: str | None) -> bool:
    return mime is not None and mime.lower().startswith("image/")


def _best_size(sizes, max_side: int):
    """The smallest size that still covers our working size, else the largest there is."""
    ordered = sorted(sizes, key=lambda s: s.width * s.height)
    for size in ordered:
        if max(size.width, size.height) >= max_side:
            return size
    return ordered[-1]


