"""A fake Telegram Bot API server on 127.0.0.1, for driving the real python-telegram-bot.

It speaks the HTTP interface PTB uses (`/bot<token>/<method>` with form or multipart bodies,
`/file/bot<token>/<path>` downloads), records every call in order, queues updates for
getUpdates (long polling) or posts them to a registered webhook, and can inject failures
(flood control, server errors) to test the adapter's retries. Per chat, it can answer slowly
(`chat_delays`) or enforce Telegram's per-chat flood control (`chat_floods`: at most one call per
N seconds to that chat, 429 with `retry_after` for the rest), so that one chat's trouble can be
told apart from everyone else's.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

BOT_ID = 7000000001
BOT_USERNAME = "darkroom_test_bot"

# What the fake keeps is bounded, so that a runaway (a retry loop without back-off, a bot that
# stopped confirming updates while a test keeps pushing) fails its test with one clear message
# instead of growing the test process until the OOM killer ends the whole run. Far above what
# any test or benchmark records (bench/flood.py: a few thousand calls).
MAX_CALLS = 50_000  # calls recorded (calls, arrived)
MAX_RECORDED_BYTES = 1 << 30  # uploaded file bytes kept with the recorded calls
MAX_BACKLOG = 10_000  # updates pushed and not yet confirmed by getUpdates


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    result: Any = None


@dataclass
class User:
    id: int
    first_name: str = "Alice"
    username: str = "alice_private"
    language_code: str = "en"

    def json(self) -> dict:
        return {
            "id": self.id,
            "is_bot": False,
            "first_name": self.first_name,
            "username": self.username,
            "language_code": self.language_code,
        }


@dataclass
class Failure:
    method: str
    kind: str  # "retry_after" | "server_error" | "bad_request" | "invalid_json" (answers `description` as the raw body)
    times: int
    retry_after: int = 1
    description: str = "Bad Request: injected"


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[Call] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.file_downloads: list[str] = []
        self.admins: dict[int, set[int]] = {}
        self.webhook_url = ""
        self.webhook_secret = ""
        self.failures: list[Failure] = []
        self.delays: dict[str, float] = {}  # method or "file" -> seconds to wait before answering
        self.chat_delays: dict[int, float] = {}  # chat id -> seconds to wait before answering calls to it
        self.chat_floods: dict[int, float] = {}  # chat id -> one call per this many seconds, else 429
        self._chat_free_at: dict[int, float] = {}
        self.down = False
        self.arrived: list[str] = []  # every method as it arrives, before any delay
        self._updates: list[dict] = []
        self._new_update = asyncio.Condition()
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self._call_event = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.url = ""
        self.webhook_responses: list[int] = []
        self.max_calls = MAX_CALLS
        self.max_recorded_bytes = MAX_RECORDED_BYTES
        self.max_backlog = MAX_BACKLOG
        self._recorded_bytes = 0
        self.overflow = ""  # why the fake stopped recording; every look at the calls fails with it

    # -- server ----------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.check()

    def check(self) -> None:
        """Fail (the test) if the fake had to stop recording."""
        if self.overflow:
            raise AssertionError(self.overflow)

    def _full(self, files: dict[str, bytes]) -> bool:
        """Whether one more call (with ``files``) would pass the bounds; says why once."""
        if not self.overflow:
            if len(self.arrived) >= self.max_calls or len(self.calls) >= self.max_calls:
                self.overflow = (
                    f"the fake Bot API received more than {self.max_calls} calls: a retry loop without back-off? "
                    f"last methods: {self.arrived[-5:]}"
                )
            elif self._recorded_bytes + sum(len(d) for d in files.values()) > self.max_recorded_bytes:
                self.overflow = f"the fake Bot API was sent more than {self.max_recorded_bytes >> 20} MB of files"
        return bool(self.overflow)

    def _record(self, call: Call) -> None:
        self._recorded_bytes += sum(len(d) for d in call.files.values())
        self.calls.append(call)

    async def outage(self, seconds: float) -> None:
        """The API goes away entirely (connections refused) and comes back on the same port."""
        await self.stop()
        await asyncio.sleep(seconds)
        await self.start()

    async def _api(self, request: web.Request) -> web.Response:
        if self.down:
            return web.json_response({"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502)
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        params, files = await _read_params(request)
        call = Call(method, params, files, time.monotonic())
        if method != "getUpdates" and self._full(files):
            async with self._call_event:
                self._call_event.notify_all()  # a test waiting for a call fails now, with the reason
            return web.json_response({"ok": False, "error_code": 500, "description": self.overflow}, status=500)
        if method != "getUpdates":
            self.arrived.append(method)
            async with self._call_event:
                self._call_event.notify_all()
        failure = self._failure_for(method)
        if failure is not None:
            self._record(Call(f"{method}!{failure.kind}", params, files, call.at))
            if failure.kind == "retry_after":
                return web.json_response(
                    {"ok": False, "error_code": 429, "description": "Too Many Requests: retry later",
                     "parameters": {"retry_after": failure.retry_after}},
                    status=429,
                )
            if failure.kind == "invalid_json":
                return web.Response(text=failure.description, content_type="application/json")
            if failure.kind == "bad_request":
                return web.json_response({"ok": False, "error_code": 400, "description": failure.description}, status=400)
            return web.json_response({"ok": False, "error_code": 500, "description": "Internal Server Error"}, status=500)
        chat = _chat_of(params)
        if chat in self.chat_floods:
            now = time.monotonic()
            free_at = self._chat_free_at.get(chat, 0.0)
            if now < free_at:
                self._record(Call(f"{method}!flood", params, files, call.at))
                return web.json_response(
                    {"ok": False, "error_code": 429, "description": "Too Many Requests: retry later",
                     "parameters": {"retry_after": max(1, math.ceil(free_at - now))}},
                    status=429,
                )
            self._chat_free_at[chat] = now + self.chat_floods[chat]
        if method in self.delays:
            await asyncio.sleep(self.delays[method])
        if chat in self.chat_delays:
            await asyncio.sleep(self.chat_delays[chat])
        handler = getattr(self, f"_m_{method}", None)
        result: Any = True if handler is None else await handler(params, files)
        if method != "getUpdates":
            call.result = result
            self._record(call)
            async with self._call_event:
                self._call_event.notify_all()
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    def _failure_for(self, method: str) -> Failure | None:
        for failure in self.failures:
            if failure.method == method and failure.times > 0:
                failure.times -= 1
                return failure
        return None

    async def _file(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=502)
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        if "file" in self.delays:
            await asyncio.sleep(self.delays["file"])
        for data, file_path in self.files.values():
            if file_path == path:
                self.file_downloads.append(path)
                return web.Response(body=data, content_type="application/octet-stream")
        return web.Response(status=404)

    # -- methods ----------------------------------------------------------------------------

    async def _m_getMe(self, params, files):
        return {"id": BOT_ID, "is_bot": True, "first_name": "Darkroom", "username": BOT_USERNAME,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _m_getUpdates(self, params, files):
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        deadline = time.monotonic() + min(timeout, 2.0)
        async with self._new_update:
            while True:
                # Confirmed updates (below offset) are forgotten, as Telegram does.
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
                if self._updates:
                    return self._updates[:100]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                try:
                    await asyncio.wait_for(self._new_update.wait(), remaining)
                except TimeoutError:
                    return []

    async def _m_setWebhook(self, params, files):
        self.webhook_url = params.get("url", "")
        self.webhook_secret = params.get("secret_token", "")
        return True

    async def _m_deleteWebhook(self, params, files):
        self.webhook_url = ""
        return True

    async def _m_getFile(self, params, files):
        file_id = params["file_id"]
        if file_id not in self.files:
            return web.json_response({"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}, status=400)
        data, path = self.files[file_id]
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data), "file_path": path}

    async def _m_sendMessage(self, params, files):
        return self._message(params["chat_id"], text=str(params.get("text", "")), reply_markup=params.get("reply_markup"))

    async def _m_editMessageText(self, params, files):
        return self._message(params["chat_id"], message_id=int(params["message_id"]), text=str(params.get("text", "")))

    async def _m_sendPhoto(self, params, files):
        photo = files.get("photo", b"")
        return self._message(
            params["chat_id"],
            caption=params.get("caption"),
            photo=[{"file_id": f"out{next(self._file_ids)}", "file_unique_id": "o", "width": 1, "height": 1, "file_size": len(photo)}],
        )

    async def _m_sendMediaGroup(self, params, files):
        media = params.get("media") or []
        return [
            self._message(params["chat_id"], caption=item.get("caption"),
                          photo=[{"file_id": f"out{next(self._file_ids)}", "file_unique_id": "o", "width": 1, "height": 1}])
            for item in media
        ]

    async def _m_sendDocument(self, params, files):
        document = files.get("document", b"")
        return self._message(params["chat_id"], caption=params.get("caption"),
                             document={"file_id": "doc", "file_unique_id": "d", "file_size": len(document)})

    async def _m_getChatMember(self, params, files):
        chat_id, user_id = int(params["chat_id"]), int(params["user_id"])
        status = "administrator" if user_id in self.admins.get(chat_id, set()) else "member"
        member = {"status": status, "user": User(user_id).json()}
        if status == "administrator":
            member.update({k: True for k in ("can_be_edited", "is_anonymous", "can_manage_chat", "can_delete_messages",
                                              "can_manage_video_chats", "can_restrict_members", "can_promote_members",
                                              "can_change_info", "can_invite_users", "can_post_stories",
                                              "can_edit_stories", "can_delete_stories")})
        return member

    def _message(self, chat_id, message_id: int | None = None, **content) -> dict:
        chat_id = int(chat_id)
        message = {
            "message_id": message_id or next(self._message_ids),
            "date": int(time.time()),
            "chat": _chat_json(chat_id),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Darkroom", "username": BOT_USERNAME},
        }
        message.update({k: v for k, v in content.items() if v is not None and k != "reply_markup"})
        return message

    # -- building updates ---------------------------------------------------------------------

    def add_file(self, data: bytes, suffix: str = "jpg") -> str:
        n = next(self._file_ids)
        file_id = f"AgACAgFileId{n:04d}xyz"
        self.files[file_id] = (data, f"photos/file_{n}.{suffix}")
        return file_id

    def next_message_id(self) -> int:
        return next(self._message_ids)

    async def push(self, update: dict) -> dict:
        update = {"update_id": next(self._update_ids), **update}
        if self.webhook_url:
            headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret}
            async with aiohttp.ClientSession() as session:
                async with session.post(self.webhook_url, json=update, headers=headers) as response:
                    self.webhook_responses.append(response.status)
            return update
        async with self._new_update:
            if len(self._updates) >= self.max_backlog:
                raise AssertionError(
                    f"the fake Bot API holds {len(self._updates)} updates nobody fetched: is the bot still polling?"
                )
            self._updates.append(update)
            self._new_update.notify_all()
        return update

    def photo_message(self, user: User, chat_id: int, data: bytes, caption: str | None = None,
                      media_group_id: str | None = None, width: int = 1280, height: int = 960,
                      forwarded_from: User | str | None = None) -> dict:
        """``forwarded_from``: a User (forwarded from that person), or "hidden", "chat" or
        "channel" (forward_origin of those kinds)."""
        file_id = self.add_file(data)
        thumb_id = self.add_file(b"thumbnail-not-to-be-used")
        message = {
            "message_id": self.next_message_id(),
            "date": int(time.time()),
            "chat": _chat_json(chat_id, user),
            "from": user.json(),
            "photo": [
                {"file_id": thumb_id, "file_unique_id": "t", "width": 90, "height": 68, "file_size": 24},
                {"file_id": file_id, "file_unique_id": "f", "width": width, "height": height, "file_size": len(data)},
            ],
        }
        if caption is not None:
            message["caption"] = caption
        if media_group_id:
            message["media_group_id"] = media_group_id
        if forwarded_from is not None:
            message["forward_origin"] = _origin(forwarded_from)
        return message

    def document_message(self, user: User, chat_id: int, data: bytes, mime: str, name: str = "file.jpg") -> dict:
        file_id = self.add_file(data, name.rsplit(".", 1)[-1])
        return {
            "message_id": self.next_message_id(),
            "date": int(time.time()),
            "chat": _chat_json(chat_id, user),
            "from": user.json(),
            "document": {"file_id": file_id, "file_unique_id": "d", "file_name": name, "mime_type": mime, "file_size": len(data)},
        }

    def text_message(self, user: User, chat_id: int, text: str, reply_to: dict | None = None) -> dict:
        message = {
            "message_id": self.next_message_id(),
            "date": int(time.time()),
            "chat": _chat_json(chat_id, user),
            "from": user.json(),
            "text": text,
        }
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        return message

    async def send_photo_from(self, user: User, data: bytes, caption: str | None = None, chat_id: int | None = None) -> dict:
        message = self.photo_message(user, chat_id or user.id, data, caption)
        await self.push({"message": message})
        return message

    async def send_text_from(self, user: User, text: str, chat_id: int | None = None, reply_to: dict | None = None) -> dict:
        message = self.text_message(user, chat_id or user.id, text, reply_to)
        await self.push({"message": message})
        return message

    async def press(self, user: User, data: str, message: dict | None = None, chat_id: int | None = None) -> dict:
        """Press a button: ``message`` is the bot's message (default: the last one with that button).
        ``data`` may be a button's data or its start ("consent:agree" presses the agree button
        shown, whatever notice version and language it carries)."""
        if message is None:
            message = self.message_with_button(data, chat_id or user.id)
        data = _button_on(message, data, self.calls) or data
        query = {
            "id": f"cb{next(self._update_ids)}",
            "from": user.json(),
            "chat_instance": "ci",
            "data": data,
            "message": {
                "message_id": message["message_id"],
                "date": int(time.time()),
                "chat": message["chat"],
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Darkroom", "username": BOT_USERNAME},
                "text": message.get("text", ""),
            },
        }
        return await self.push({"callback_query": query})

    async def consent(self, user: User) -> None:
        """/start, the notice, "I agree", the thanks: a person who has consented in private."""
        notice = "你同意吗" if user.language_code.startswith("zh") else "Do you agree?"
        thanks = "谢谢" if user.language_code.startswith("zh") else "Thank you"
        await self.send_text_from(user, "/start")
        await self.wait_for_text(notice, chat_id=user.id)
        await self.press(user, "consent:agree")
        await self.wait_for_text(thanks, chat_id=user.id)

    async def consent_with_style(self, user: User, style: str = "ink") -> None:
        """`consent`, then ``/style STYLE`` (a name, and a strength if wanted) as the favourite."""
        await self.consent(user)
        await self.send_text_from(user, f"/style {style}")
        await self.wait_for_text("常用风格已设为" if user.language_code.startswith("zh") else "favourite style", chat_id=user.id)

    def message_with_button(self, data: str, chat_id: int) -> dict:
        for call in reversed(self.calls):
            markup = call.params.get("reply_markup")
            if call.method in ("sendMessage", "sendPhoto") and int(call.params.get("chat_id", 0)) == chat_id and markup:
                buttons = [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]
                if any(b == data or b.startswith(data + ":") for b in buttons):
                    return call.result  # type: ignore[attr-defined]
        raise AssertionError(f"no message with button {data!r} in chat {chat_id}")

    async def remove_bot_from(self, group_id: int, by: User) -> None:
        await self.push({"my_chat_member": {
            "chat": _chat_json(group_id),
            "from": by.json(),
            "date": int(time.time()),
            "old_chat_member": {"status": "member", "user": (await self._m_getMe({}, {}))},
            "new_chat_member": {"status": "kicked", "user": (await self._m_getMe({}, {})), "until_date": 0},
        }})

    # -- assertions -------------------------------------------------------------------------

    def methods(self) -> list[str]:
        return [c.method for c in self.calls]

    def calls_to(self, method: str, chat_id: int | None = None) -> list[Call]:
        return [c for c in self.calls if c.method == method and (chat_id is None or int(c.params.get("chat_id", 0)) == chat_id)]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 30.0, chat_id: int | None = None,
                       where=None) -> list[Call]:
        """Wait until ``count`` calls of ``method`` (matching ``where``) were received."""
        deadline = time.monotonic() + timeout

        def matching():
            return [c for c in self.calls_to(method, chat_id) if where is None or where(c)]

        async with self._call_event:
            while len(matching()) < count:
                self.check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {count} {method} call(s); got {self.methods()}")
                try:
                    await asyncio.wait_for(self._call_event.wait(), remaining)
                except TimeoutError:
                    pass
        return matching()

    async def wait_for_arrival(self, method: str, timeout: float = 30.0) -> None:
        """Wait until a call of ``method`` has arrived (it may still be delayed)."""
        deadline = time.monotonic() + timeout
        async with self._call_event:
            while method not in self.arrived:
                self.check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out waiting for {method} to arrive; got {self.arrived}")
                try:
                    await asyncio.wait_for(self._call_event.wait(), remaining)
                except TimeoutError:
                    pass

    async def wait_for_text(self, fragment: str, chat_id: int | None = None, timeout: float = 30.0) -> Call:
        calls = await self.wait_for(
            "sendMessage", chat_id=chat_id, timeout=timeout, where=lambda c: fragment in str(c.params.get("text", ""))
        )
        return calls[0]

    async def wait_for_edit(self, fragment: str, chat_id: int | None = None, timeout: float = 30.0) -> Call:
        calls = await self.wait_for(
            "editMessageText", chat_id=chat_id, timeout=timeout, where=lambda c: fragment in str(c.params.get("text", ""))
        )
        return calls[0]


def _button_on(message: dict, data: str, calls: list[Call]) -> str | None:
    """The full data of the button starting with ``data`` on the bot's ``message`` (its latest
    keyboard, edits included)."""
    for call in reversed(calls):
        if call.method not in ("sendMessage", "sendPhoto", "editMessageText") or not isinstance(call.result, dict):
            continue
        if call.result.get("message_id") != message.get("message_id"):
            continue
        markup = call.params.get("reply_markup") or {}
        for row in markup.get("inline_keyboard", []):
            for button in row:
                found = button.get("callback_data", "")
                if found == data or found.startswith(data + ":"):
                    return found
        return None
    return None


def _origin(source) -> dict:
    date = int(time.time()) - 60
    if isinstance(source, User):
        return {"type": "user", "date": date, "sender_user": source.json()}
    if source == "hidden":
        return {"type": "hidden_user", "date": date, "sender_user_name": "Someone"}
    if source == "chat":
        return {"type": "chat", "date": date, "sender_chat": {"id": -100777, "type": "supergroup", "title": "Elsewhere"}}
    return {"type": "channel", "date": date, "chat": {"id": -100888, "type": "channel", "title": "News"}, "message_id": 5}


def _chat_of(params: dict[str, Any]) -> int | None:
    try:
        return int(params["chat_id"])
    except (KeyError, TypeError, ValueError):
        return None


def _chat_json(chat_id: int, user: User | None = None) -> dict:
    if chat_id > 0:
        chat = {"id": chat_id, "type": "private"}
        if user is not None:
            chat.update({"first_name": user.first_name, "username": user.username})
        return chat
    return {"id": chat_id, "type": "supergroup", "title": "Test group"}


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
    params: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    if request.method == "GET":
        raw = dict(request.query)
    elif request.content_type == "application/json":
        raw = await request.json()
    else:
        raw = {}
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
            else:
                raw[key] = value
    for key, value in raw.items():
        if isinstance(value, str) and value[:1] in ("{", "["):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        params[key] = value
    # Media groups reference their files as attach://name.
    if isinstance(params.get("media"), list):
        for item in params["media"]:
            media = item.get("media", "")
            if isinstance(media, str) and media.startswith("attach://"):
                item["bytes"] = files.get(media[len("attach://"):], b"")
    return params, files
