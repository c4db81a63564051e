"""WeChat Official Account adapter: callbacks → neutral events, neutral replies → the
customer-service message API. The only module that imports wechatpy.

wechatpy does what it is good at: signatures, AES safe mode, message parsing. The outbound calls
(access token, media/get, media/upload, message/custom/send) go through aiohttp on our own event
loop instead of wechatpy's client, because that client is built on `requests` (it would block the
loop or need a thread per call) and because every call, the token request included, must use the
configurable WECHAT_API_URL.

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
import json
import logging
import time
from typing import Protocol

import aiohttp
from aiohttp import web
from defusedxml import ElementTree as SafeXML
from defusedxml.common import DefusedXmlException
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

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

from .logs import REDACTOR
from .pseudonym import Pseudonymizer
from .settings import Settings
from .shared.tokens import MemoryTokenStore, TokenStore

log = logging.getLogger("darkroom.wechat")
PLATFORM = "wechat"
SERVICE_WINDOW = 48 * 3600  # customer-service messages may be sent 48 h after the person's last message
TOKEN_ERRORS = {40001, 40014, 42001}  # invalid, malformed or expired access token: refresh once
WINDOW_ERRORS = {45015, 45047}  # outside the 48 h window / too many messages in a row
RETRY_GRACE = 30  # WeChat retries three times, 5 s apart, after the first attempt
NONCE_LIMIT = 64  # WeChat's nonces are ten digits or so
TEXT_LIMIT = 1800  # bytes per customer-service text (WeChat allows 2048)

ENGLISH_ANSWERS = ("agree", "yes", "no", "under", "again")  # typed answers that show English


class SeenCallbacks(Protocol):
    """The replay guard's store (bot.storage.Storage): keyed hashes with an expiry."""

    async def first_sight(self, key: str, digest: str, expires_at: int) -> str | None: ...


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class WeChatPlatform:
    name = PLATFORM
    has_buttons = False
    can_edit = False
    can_delete_messages = False

    def __init__(
        self, settings: Settings, pseudonymize: Pseudonymizer, dispatch, seen: SeenCallbacks, tokens: TokenStore | None = None
    ) -> None:
        self.settings = settings
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
        self._api = settings.wechat_api_url
        self._session: aiohttp.ClientSession | None = None
        self._tokens = tokens or MemoryTokenStore()  # shared among processes when scaled out
        self._last_message: dict[str, float] = {}  # pseudonym -> when they last wrote to us
        self._language: dict[str, str] = {}  # pseudonym -> "zh" (default) or "en"
        self._tasks: set[asyncio.Task] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, connect=10))
        log.info("WeChat callback ready at /wechat (%s mode, timestamps within %d s)", self._encryption, self._window)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

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
            await self._dispatch(event, self)
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
            self._last_message[person_pseudonym] = time.time()
            person, chat = self._person_and_chat(openid, person_pseudonym)
            return MembershipEvent(person, chat, None, change=change)
        self._last_message[person_pseudonym] = time.time()
        self._prune()
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

    def _prune(self) -> None:
        """Forget people whose customer-service window closed long ago (bounded memory)."""
        if len(self._last_message) < 10_000:
            return
        cutoff = time.time() - SERVICE_WINDOW
        for pseudonym in [p for p, seen in self._last_message.items() if seen < cutoff]:
            del self._last_message[pseudonym]
            self._language.pop(pseudonym, None)

    def _learn_language(self, pseudonym: str, content: str) -> None:
        """Chinese by default; English once the person writes English commands or answers.
        The answer itself already counts: after typing "agree" under a Chinese notice, the
        replies are in English (while the consent record keeps the Chinese text that was shown)."""
        if not content:
            return
        if any("\u4e00" <= ch <= "\u9fff" for ch in content):
            self._language[pseudonym] = "zh"
        elif content.startswith("/") or content.lower() in commands.TYPED or content.lower() in ENGLISH_ANSWERS:
            self._language[pseudonym] = "en"

    def _person_and_chat(self, openid: str, pseudonym: str) -> tuple[Person, Chat]:
        address = Address(PLATFORM, openid)
        person = Person(pseudonym, self._language.get(pseudonym, "zh"), address)
        chat = Chat(self._pseudonymize(PLATFORM, "chat", openid), ChatKind.PRIVATE, address)
        return person, chat

    # -- the Platform port ------------------------------------------------------------------------

    async def fetch(self, photo: PhotoRef, max_bytes: int) -> bytearray:
        """media/get by MediaId, into memory only, refusing more than ``max_bytes``."""
        token = await self._access_token()
        for attempt in range(2):
            url = f"{self._api}/cgi-bin/media/get"
            try:
                async with self._http().get(url, params={"access_token": token, "media_id": photo.platform_ref}) as response:
                    if response.status != 200:
                        raise FetchFailed(f"HTTP {response.status}")
                    content_type = response.headers.get("Content-Type", "")
                    if "json" in content_type or "text/plain" in content_type:
                        error = _errcode(await response.read())
                        if error in TOKEN_ERRORS and attempt == 0:
                            token = await self._access_token(stale=token)
                            continue
                        raise FetchFailed(f"errcode {error}")
                    if response.content_length and response.content_length > max_bytes:
                        raise PhotoTooLarge()
                    data = bytearray()
                    async for chunk in response.content.iter_chunked(64 * 1024):
                        data += chunk
                        if len(data) > max_bytes:
                            data[:] = bytes(len(data))
                            raise PhotoTooLarge()
                    return data
            except aiohttp.ClientError as exc:
                raise FetchFailed(type(exc).__name__) from None
        raise FetchFailed("token refused twice")

    async def is_admin(self, chat: Chat, person: Person) -> bool:
        return False  # Official Accounts have no groups

    def forget(self, person: Person) -> None:
        """Erasure: drop the person's language and last-message time (kept in memory only)."""
        self._last_message.pop(person.pseudonym, None)
        self._language.pop(person.pseudonym, None)

    async def send(self, chat: Address, reply: Reply) -> MessageRef | None:
        openid = chat.value
        if isinstance(reply, SendText):
            for part in _split(reply.text + _typed_choices(reply.buttons)):
                await self._custom_send(openid, {"msgtype": "text", "text": {"content": part}})
            return None
        if isinstance(reply, SendPhotos):
            for photo in reply.photos:
                media_id = await self._upload(photo.jpeg)
                await self._custom_send(openid, {"msgtype": "image", "image": {"media_id": media_id}})
            captions = "\n".join(p.caption for p in reply.photos if p.caption)
            if captions or reply.buttons:
                for part in _split(captions + _typed_choices(reply.buttons)):
                    await self._custom_send(openid, {"msgtype": "text", "text": {"content": part}})
            return None
        if isinstance(reply, SendDocument):
            # Customer-service messages cannot carry files: the document goes as text.
            text = f"{reply.caption}\n{reply.data.decode('utf-8', 'replace')}"
            for part in _split(text):
                await self._custom_send(openid, {"msgtype": "text", "text": {"content": part}})
            return None
        if isinstance(reply, (EditText, DeleteMessage, ChatAction, AnswerButton)):
            return None  # nothing to edit, delete or acknowledge on WeChat
        raise TypeError(f"unknown reply {type(reply).__name__}")

    # -- the WeChat API -----------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise DeliveryFailed("the WeChat adapter is not started")
        return self._session

    async def _access_token(self, stale: str | None = None) -> str:
        """The current access token (from the token store: this process's memory, or sealed in
        Redis shared by all processes); never logged. ``stale`` is a token WeChat just refused:
        it is replaced once, however many calls saw it fail."""
        token = await self._tokens.token(self._request_token, stale)
        REDACTOR.add(token)  # also when another process fetched it
        return token

    async def _request_token(self) -> tuple[str, float]:
        params = {
            "grant_type": "client_credential",
            "appid": self.settings.wechat_appid,
            "secret": self.settings.wechat_secret,
        }
        try:
            async with self._http().get(f"{self._api}/cgi-bin/token", params=params) as response:
                data = json.loads(await response.read())
        except (aiohttp.ClientError, ValueError) as exc:
            raise DeliveryFailed(f"access token: {type(exc).__name__}") from None
        token = data.get("access_token")
        if not token:
            raise DeliveryFailed(f"access token refused (errcode {data.get('errcode')})")
        REDACTOR.add(token)
        log.info("WeChat access token refreshed")
        return token, float(data.get("expires_in", 7200))

    async def _api_call(self, path: str, params: dict | None = None, body=None) -> dict:
        """POST to the API with the access token; on an invalid-token error, refresh once.
        ``body()`` builds the request body anew for each attempt (form data is single-use)."""
        token = await self._access_token()
        for attempt in range(2):
            data, headers = body() if body is not None else (None, None)
            try:
                async with self._http().post(
                    f"{self._api}{path}", params={"access_token": token, **(params or {})}, data=data, headers=headers
                ) as response:
                    result = json.loads(await response.read())
            except (aiohttp.ClientError, ValueError) as exc:
                raise DeliveryFailed(type(exc).__name__) from None
            error = int(result.get("errcode", 0) or 0)
            if error in TOKEN_ERRORS and attempt == 0:
                log.info("WeChat access token rejected (errcode %d); refreshing once", error)
                token = await self._access_token(stale=token)
                continue
            if error:
                raise DeliveryFailed(f"errcode {error}")
            return result
        raise DeliveryFailed("token refused twice")

    async def _custom_send(self, openid: str, message: dict) -> None:
        pseudonym = self._pseudonymize(PLATFORM, "user", openid)
        last = self._last_message.get(pseudonym)
        if last is not None and time.time() - last > SERVICE_WINDOW:
            log.info("a reply was dropped: outside the 48-hour customer-service window")
            return
        payload = json.dumps({"touser": openid, **message}, ensure_ascii=False).encode("utf-8")
        try:
            await self._api_call(
                "/cgi-bin/message/custom/send",
                body=lambda: (payload, {"Content-Type": "application/json; charset=utf-8"}),
            )
        except DeliveryFailed as exc:
            if any(f"errcode {code}" in str(exc) for code in WINDOW_ERRORS):
                log.info("a reply was dropped: WeChat says the customer-service window is closed")
                return
            raise

    async def _upload(self, jpeg: bytes) -> str:
        """Temporary media (kept by WeChat for 3 days), never permanent material."""
        def form():
            data = aiohttp.FormData()
            data.add_field("media", jpeg, filename="darkroom.jpg", content_type="image/jpeg")
            return data, None

        data = await self._api_call("/cgi-bin/media/upload", params={"type": "image"}, body=form)
        media_id = data.get("media_id")
        if not media_id:
            raise DeliveryFailed("media/upload returned no media_id")
        return media_id


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


def _typed_choices(keyboard: Keyboard) -> str:
    """Buttons as lines to type: "[1] Impressionist"."""
    lines = []
    for row in keyboard:
        for button in row:
            if button.web_app:  # the on-device page, as an H5 link
                lines.append(f"{button.label}: {button.web_app}")
                continue
            shown = button.typed[0] if button.typed else button.label
            lines.append(f"[{shown}] {button.label}" if shown != button.label else f"[{shown}]")
    return ("\n\n" + "\n".join(lines)) if lines else ""


def _split(text: str) -> list[str]:
    """Pieces of at most TEXT_LIMIT UTF-8 bytes, cut at line ends where possible."""
    parts: list[str] = []
    current = ""
    for line in text.split("\n"):
        candidate = f"{current}\n{line}" if current else line
        if len(candidate.encode()) <= TEXT_LIMIT:
            current = candidate
            continue
        if current:
            parts.append(current)
        while len(line.encode()) > TEXT_LIMIT:
            cut = TEXT_LIMIT // 3
            parts.append(line[:cut])
            line = line[cut:]
        current = line
    if current:
        parts.append(current)
    return parts or [""]


def _errcode(raw: bytes) -> int:
    try:
        return int(json.loads(raw).get("errcode", -1))
    except (ValueError, AttributeError):
        return -1
