"""WeChat's client side: neutral replies → the customer-service message API, photos fetched
by MediaId into memory.

The outbound calls (access token, media/get, media/upload, message/custom/send) go through
aiohttp on our own event loop instead of wechatpy's client, because that client is built on
`requests` (it would block the loop or need a thread per call) and because every call, the token
request included, must use the configurable WECHAT_API_URL. `WeChatClient` is the
`handlers.ports.Platform` for WeChat; a worker, which only answers, builds just this.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import aiohttp

from bot.platforms.wechat.tokens import MemoryTokenStore, TokenStore
from bot.safeguards.logs import REDACTOR
from bot.safeguards.pseudonym import Pseudonymizer
from bot.settings import Settings
from handlers.events import Address, Chat, MessageRef, Person, PhotoRef
from handlers.ports import DeliveryFailed, FetchFailed, PhotoTooLarge
from handlers.replies import AnswerButton, ChatAction, DeleteMessage, EditText, Keyboard, Reply, SendDocument, SendPhotos, SendText

log = logging.getLogger("darkroom.wechat")
PLATFORM = "wechat"
SERVICE_WINDOW = 48 * 3600  # customer-service messages may be sent 48 h after the person's last message
TOKEN_ERRORS = {40001, 40014, 42001}  # invalid, malformed or expired access token: refresh once
WINDOW_ERRORS = {45015, 45047}  # outside the 48 h window / too many messages in a row
TEXT_LIMIT = 1800  # bytes per customer-service text (WeChat allows 2048)
REMEMBERED = 10_000  # people remembered before those whose window closed long ago are forgotten


@dataclass
class Correspondents:
    """What the adapter keeps, in memory only, about the people writing to the account, by
    pseudonym: when each last wrote (replies are possible for 48 hours after that) and the
    language they write in. The callback writes it, the client reads it, erasure forgets it."""

    last_message: dict[str, float] = field(default_factory=dict)  # pseudonym -> when they last wrote
    language: dict[str, str] = field(default_factory=dict)  # pseudonym -> "zh" (default) or "en"

    def wrote(self, pseudonym: str) -> None:
        self.last_message[pseudonym] = time.time()
        self._prune()

    def window_closed(self, pseudonym: str) -> bool:
        last = self.last_message.get(pseudonym)
        return last is not None and time.time() - last > SERVICE_WINDOW

    def forget(self, pseudonym: str) -> None:
        self.last_message.pop(pseudonym, None)
        self.language.pop(pseudonym, None)

    def _prune(self) -> None:
        """Forget people whose customer-service window closed long ago (bounded memory)."""
        if len(self.last_message) < REMEMBERED:
            return
        cutoff = time.time() - SERVICE_WINDOW
        for pseudonym in [p for p, seen in self.last_message.items() if seen < cutoff]:
            self.forget(pseudonym)


class WeChatClient:
    """Sends to and fetches from the WeChat API: the Platform port for WeChat."""

    name = PLATFORM
    has_buttons = False
    can_edit = False
    can_delete_messages = False

    def __init__(self, settings: Settings, pseudonymize: Pseudonymizer, tokens: TokenStore | None = None) -> None:
        self.settings = settings
        self._pseudonymize = pseudonymize
        self._api = settings.wechat_api_url
        self._session: aiohttp.ClientSession | None = None
        self._tokens = tokens or MemoryTokenStore()  # shared among processes when scaled out
        self.people = Correspondents()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30, connect=10))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        self.people.forget(person.pseudonym)

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
        if self.people.window_closed(pseudonym):
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
