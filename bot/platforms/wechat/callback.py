"""WeChat's receiving side: signed callbacks → neutral events, handed to the router. The only
module that imports wechatpy, which does what it is good at: signatures, AES safe mode, message
parsing. Replies go through the `WeChatClient` it is given.

WeChat waits 5 seconds for an answer and retries three times, while styling takes longer: the
callback is answered at once with "success", duplicates are dropped by MsgId (events by sender and
CreateTime), and the result is delivered later as a customer-service image message.

Every callback must be signed, carry a timestamp within WECHAT_TIMESTAMP_WINDOW of now, and use a
(timestamp, nonce) pair not used before: plain mode's signature covers only (token, timestamp,
nonce), not the body, so a leaked signature could otherwise carry any XML. Used pairs and message
ids are kept as keyed hashes in the database (they survive a restart) until the window closes.
WeChat's documentation does not say whether a retry reuses the pair, so both are handled: a retry
with a fresh pair is caught by its MsgId, and an identical repeat of a used pair within RETRY_GRACE
of its timestamp is answered "success" and does nothing. Any other reuse of a pair is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Protocol

from aiohttp import web
from defusedxml import ElementTree as SafeXML
from defusedxml.common import DefusedXmlException
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from bot.platforms.wechat.client import PLATFORM, WeChatClient
from bot.safeguards.pseudonym import Pseudonymizer
from bot.settings import Settings
from handlers import commands
from handlers.context import where
from handlers.events import (
    Address,
    Chat,
    ChatKind,
    CommandEvent,
    Event,
    Membership,
    MembershipEvent,
    Person,
    PhotoEvent,
    PhotoRef,
    TextEvent,
    UnsupportedEvent,
)

log = logging.getLogger("darkroom.wechat")
RETRY_GRACE = 30  # WeChat retries three times, 5 s apart, after the first attempt
NONCE_LIMIT = 64  # WeChat's nonces are ten digits or so

ENGLISH_ANSWERS = ("agree", "yes", "no", "under", "again")  # typed answers that show English


class SeenCallbacks(Protocol):
    """The replay guard's store (bot.storage.Storage): keyed hashes with an expiry."""

    async def first_sight(self, key: str, digest: str, expires_at: int) -> str | None: ...


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason




class WeChatCallback:
    """GET|POST /wechat: checks each callback, drops WeChat's retries and replays, and hands each
    message, as a neutral event, to ``dispatch(event, client)``: the router's entry point."""

    def __init__(
        self, settings: Settings, client: WeChatClient, pseudonymize: Pseudonymizer, dispatch, seen: SeenCallbacks
    ) -> None:
        self.settings = settings
        self.client = client
        self.people = client.people
        self._pseudonymize = pseudonymize
        self._dispatch = dispatch
        self._seen = seen
        self._window = settings.wechat_timestamp_window
        self._encryption = settings.wechat_encryption
        self._crypto = (
            WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_appid)
            if settings.wechat_encryption != "plain"
            else None
        )
        self._tasks: set[asyncio.Task] = set()
        log.info("WeChat callback ready at /wechat (%s mode, timestamps within %d s)", self._encryption, self._window)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the callback --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """GET /wechat (URL verification) and POST /wechat (messages and events)."""
        query = request.query
        signature, timestamp, nonce = query.get("signature", ""), query.get("timestamp", ""), query.get("nonce", "")
        try:
            check_signature(self.settings.wechat_token, signature, timestamp, nonce)
        except InvalidSignatureException:
            return _refuse(403, "a bad signature")
        if not self._fresh(timestamp):
            return _refuse(403, f"a timestamp that is not a number or not within {self._window} s of now")
        if not 0 < len(nonce) <= NONCE_LIMIT:
            return _refuse(403, "a missing or oversized nonce")
        if request.method == "GET":
            # URL verification consumes its pair too: a GET's signature in a log must not carry a POST.
            echo = query.get("echostr", "")
            try:
                if await self._first_use(timestamp, nonce, b"GET\n" + echo.encode()) == "replay":
                    return _refuse(403, "a replayed timestamp and nonce")
            except Refused as refused:
                return _refuse(refused.status, refused.reason)
            return web.Response(text=echo)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, "an oversized body")
        try:
            content = self._authenticated_content(query, body, timestamp, nonce)
        except Refused as refused:
            return _refuse(refused.status, refused.reason)
        except InvalidSignatureException:
            return _refuse(403, "a bad message signature")
        except Exception as exc:
            return _refuse(400, f"malformed XML ({type(exc).__name__})")
        try:
            use = await self._first_use(timestamp, nonce, content)
            if use == "replay":
                return _refuse(403, "a replayed timestamp and nonce")
            if use == "repeat":
                return web.Response(text="success")  # WeChat retrying with the same pair: already handled
            try:
                message = parse_message(content)
            except Exception as exc:
                return _refuse(400, f"a malformed message ({type(exc).__name__})")
            if not await self._first_time(message):
                return web.Response(text="success")  # WeChat retrying with a fresh pair: already handled
        except Refused as refused:
            return _refuse(refused.status, refused.reason)
        event = self.translate(message)
        if event is not None:
            task = asyncio.create_task(self._dispatch_safely(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # Answer within WeChat's 5 s at once; the result arrives as a customer-service message.
        return web.Response(text="success")

    def _fresh(self, timestamp: str) -> bool:
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
            return False
        return abs(time.time() - int(timestamp)) <= self._window

    def _authenticated_content(self, query, body: bytes, timestamp: str, nonce: str) -> bytes:
        """The message XML, as far as it can be authenticated. Safe mode: only an encrypted body
        whose msg_signature covers it. Compatible mode: the encrypted part, verified, whenever it
        is present; a plaintext-only body otherwise. Plain mode: the body as it came (its
        signature covers only token, timestamp and nonce)."""
        document = _parse_safely(body, required=())
        encrypted = document.find("Encrypt")
        says_aes = query.get("encrypt_type", "raw") == "aes"
        if self._crypto is None:
            if says_aes or encrypted is not None:
                raise Refused(400, "an encrypted request, but WECHAT_ENCRYPTION is plain")
            _require(document, REQUIRED_FIELDS)
            return body
        if encrypted is None:
            if says_aes:
                raise Refused(400, "encrypt_type=aes without an Encrypt element")
            if self._encryption == "safe":
                raise Refused(403, "a plaintext request while WECHAT_ENCRYPTION is safe")
            _require(document, REQUIRED_FIELDS)
            return body
        plaintext = self._crypto.decrypt_message(
            {"Encrypt": encrypted.text or ""}, query.get("msg_signature", ""), timestamp, nonce
        )
        content = plaintext.encode() if isinstance(plaintext, str) else plaintext
        _parse_safely(content)
        return content

    async def _first_use(self, timestamp: str, nonce: str, content: bytes) -> str:
        """"new", "repeat" (the same authenticated content under a used pair, soon after its
        timestamp: a retry, or a replay that changes nothing) or "replay" (anything else)."""
        key = self._pseudonymize(PLATFORM, "callback", f"{timestamp}:{nonce}")
        digest = self._pseudonymize(PLATFORM, "callback-body", hashlib.sha256(content).hexdigest())
        first = await self._remember(key, digest, int(timestamp) + self._window + 1)
        if first is None:
            return "new"
        if first == digest and time.time() - int(timestamp) <= RETRY_GRACE:
            return "repeat"
        return "replay"

    async def _dispatch_safely(self, event: Event) -> None:
        try:
            await self._dispatch(event, self.client)
        except Exception as exc:
            log.error("wechat event failed: %s at %s", type(exc).__name__, where(exc))

    async def _first_time(self, message) -> bool:
        """WeChat's retry rule: MsgId for messages, sender and CreateTime for events. Kept as a
        keyed hash (no OpenID, even in the database) until the timestamp window closes."""
        sender = getattr(message, "source", "") or ""
        msg_id = getattr(message, "id", None)
        raw = f"m:{msg_id}" if msg_id else f"e:{sender}:{getattr(message, 'create_time', '')}:{getattr(message, 'event', '')}"
        key = self._pseudonymize(PLATFORM, "dedup", raw)
        return await self._remember(key, "", int(time.time()) + self._window + RETRY_GRACE) is None

    async def _remember(self, key: str, digest: str, expires_at: int) -> str | None:
        """The replay guard fails closed: a callback it cannot record is not processed (WeChat
        retries it)."""
        try:
            return await self._seen.first_sight(key, digest, expires_at)
        except Exception as exc:
            raise Refused(503, f"the replay guard could not record it ({type(exc).__name__})") from None

    # -- messages → events ----------------------------------------------------------------------

    def translate(self, message) -> Event | None:
        openid = getattr(message, "source", None)
        if not openid:
            return None
        person_pseudonym = self._pseudonymize(PLATFORM, "user", openid)
        kind = message.type
        if kind == "event":
            event_type = (getattr(message, "event", "") or "").lower()
            if event_type.startswith("subscribe"):
                change = Membership.SUBSCRIBED
            elif event_type == "unsubscribe":
                change = Membership.UNSUBSCRIBED
            else:
                return None
            self.people.wrote(person_pseudonym)
            person, chat = self._person_and_chat(openid, person_pseudonym)
            return MembershipEvent(person, chat, None, change=change)
        self.people.wrote(person_pseudonym)
        if kind == "text":
            content = (message.content or "").strip()
            self._learn_language(person_pseudonym, content)
            person, chat = self._person_and_chat(openid, person_pseudonym)
            command = _command(content)
            if command is not None:
                name, args = command
                return CommandEvent(person, chat, None, name=name, args=args)
            return TextEvent(person, chat, None, text=content)
        person, chat = self._person_and_chat(openid, person_pseudonym)
        if kind == "image" and getattr(message, "media_id", None):
            # By MediaId through media/get, never by scraping PicUrl.
            return PhotoEvent(person, chat, None, photos=(PhotoRef(message.media_id, mime="image/jpeg"),))
        return UnsupportedEvent(person, chat, None, what="message")

    def _learn_language(self, pseudonym: str, content: str) -> None:
        """Chinese by default; English once the person writes English commands or answers.
        The answer itself already counts: after typing "agree" under a Chinese notice, the
        replies are in English (while the consent record keeps the Chinese text that was shown)."""
        if not content:
            return
        if any("\u4e00" <= ch <= "\u9fff" for ch in content):
            self.people.language[pseudonym] = "zh"
        elif content.startswith("/") or content.lower() in commands.TYPED or content.lower() in ENGLISH_ANSWERS:
            self.people.language[pseudonym] = "en"

    def _person_and_chat(self, openid: str, pseudonym: str) -> tuple[Person, Chat]:
        address = Address(PLATFORM, openid)
        person = Person(pseudonym, self.people.language.get(pseudonym, "zh"), address)
        chat = Chat(self._pseudonymize(PLATFORM, "chat", openid), ChatKind.PRIVATE, address)
        return person, chat


def _refuse(status: int, reason: str) -> web.Response:
    log.warning("rejected a /wechat request: %s", reason)
    return web.Response(status=status, text={403: "forbidden", 413: "too large", 503: "unavailable"}.get(status, "bad request"))


# The fields Darkroom reads. WeChat sends each once, as text; anything else (nested elements,
# repeats) would reach wechatpy's typed fields as dicts or lists and fail deep inside.
REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
TEXT_FIELDS = REQUIRED_FIELDS + ("MsgId", "Content", "MediaId", "Event", "Encrypt")
NUMBER_FIELDS = ("CreateTime", "MsgId")


def _parse_safely(body: bytes, required: tuple[str, ...] = REQUIRED_FIELDS):
    """Parse once with defusedxml: DTDs, entity declarations (billion laughs, external entities)
    are refused before wechatpy's parser ever sees the document, and so is any document that is
    not shaped like a WeChat message: the ``required`` fields present, and every field Darkroom
    reads there at most once, as text (numbers as digits)."""
    try:
        root = SafeXML.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ValueError(f"unsafe XML: {type(exc).__name__}") from None
    if root.tag != "xml":
        raise ValueError("not a WeChat message")
    _require(root, required)
    for name in TEXT_FIELDS:
        found = root.findall(name)
        if len(found) > 1 or any(len(element) for element in found):
            raise ValueError("not a WeChat message")
        if found and name in NUMBER_FIELDS and not (found[0].text or "").strip().isdigit():
            raise ValueError("not a WeChat message")
    return root


def _require(root, names: tuple[str, ...]) -> None:
    if any(root.find(name) is None for name in names):
        raise ValueError("not a WeChat message")


def _command(content: str) -> tuple[str, str] | None:
    if content.startswith("/"):
        head, _, args = content[1:].partition(" ")
        return head.lower(), args.strip()
    lowered = content.lower()
    if lowered in commands.TYPED:  # WeChat has no command menu: people type the commands
        return commands.TYPED[lowered], ""
    head, _, args = content.partition(" ")
    if head.lower() in commands.TYPED_WITH_ARGS and args.strip():
        return commands.TYPED_WITH_ARGS[head.lower()], args.strip()
    return None


