"""What the conversation needs from the outside world, as protocols.

`bot/` implements these (Telegram and WeChat adapters, SQLite or PostgreSQL storage, the fair job queue);
tests implement them with small fakes. Nothing here names a platform.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from .events import Address, Chat, MessageRef, Person, PhotoRef
from .replies import Reply


class DeliveryFailed(Exception):
    """The platform would not take a reply even after retries (logged without personal data)."""


class FetchFailed(Exception):
    """A photo could not be downloaded from the platform."""


class PhotoTooLarge(FetchFailed):
    """The platform says (or the download shows) that the file exceeds our byte limit."""


class Platform(Protocol):
    name: str
    has_buttons: bool  # False: buttons are shown as typed choices
    can_edit: bool  # False: edits are not shown, so anything important is sent anew
    can_delete_messages: bool  # the person's selfie and the bot's own replies

    async def send(self, chat: Address, reply: Reply) -> MessageRef | None: ...

    async def fetch(self, photo: PhotoRef, max_bytes: int) -> bytearray:
        """Download into memory only. Raises PhotoTooLarge or FetchFailed."""
        ...

    async def is_admin(self, chat: Chat, person: Person) -> bool: ...

    def forget(self, person: Person) -> None:
        """Drop whatever the adapter keeps in memory about ``person`` (erasure)."""
        ...


@dataclass(frozen=True)
class ConsentRecord:
    version: str
    text_sha256: str
    language: str
    given_at: int  # unix seconds


@dataclass(frozen=True)
class Preferences:
    style: str | None = None
    strength: float = 1.0
    keep_colours: bool = False


class Store(Protocol):
    async def consent(self, person: str) -> ConsentRecord | None: ...

    async def record_consent(self, person: str, record: ConsentRecord) -> None: ...

    async def consent_history(self, person: str) -> list[ConsentRecord]: ...

    async def preferences(self, person: str) -> Preferences: ...

    async def set_preferences(self, person: str, preferences: Preferences) -> None: ...

    async def group_enabled(self, chat: str) -> bool: ...

    async def set_group_enabled(self, chat: str, enabled: bool) -> None: ...

    async def delete_person(self, person: str) -> dict[str, int]:
        """Remove every row linked to ``person``; returns what was removed, per kind."""
        ...

    async def delete_group(self, chat: str) -> int: ...

    # The bot's own replies to delete later (DARKROOM_REPLY_TTL): the only chat data kept.
    async def remember_reply(self, person: str, message: MessageRef, delete_at: int) -> None: ...

    async def due_replies(self, now: int) -> list[tuple[int, MessageRef]]: ...

    async def replies_of(self, person: str) -> list[tuple[int, MessageRef]]: ...

    async def forget_reply(self, row: int) -> None: ...

    # Jobs in flight, so that a person whose job a crash lost can be told after a restart.
    async def job_started(self, person: str, chat: Address, language: str) -> int: ...

    async def job_finished(self, row: int) -> None: ...

    async def lost_jobs(self) -> list[tuple[int, Address, str]]: ...


class QueueRefused(Exception):
    """Base for a job the queue will not take; ``reason`` picks the message."""

    reason = "busy"

    def __init__(self, retry_after: float = 0.0) -> None:
        super().__init__(self.reason)
        self.retry_after = retry_after


class QueueFull(QueueRefused):
    reason = "busy"


class ShuttingDown(QueueRefused):
    reason = "shutdown"


class RateLimited(QueueRefused):
    reason = "rate_limited"


class TooManyPending(QueueRefused):
    reason = "too_many_pending"


Work = Callable[[], Awaitable[None]]
PositionCallback = Callable[[int], Awaitable[None]]
DropCallback = Callable[[], Awaitable[None]]


class JobQueue(Protocol):
    stopping: bool  # True while the bot shuts down: running jobs are being cancelled
    per_person: int  # jobs one person may have queued or running at once

    def submit(
        self,
        owner: str,
        work: Work,
        on_position: PositionCallback | None = None,
        on_drop: DropCallback | None = None,
        photos: int = 1,
    ) -> int:
        """Queue ``work`` for ``owner``; returns its position (1 = next). Raises QueueRefused.
        ``on_drop`` is awaited if the job is dropped unstarted because the bot shuts down.
        ``photos`` is how many photos the job styles: each one counts against the hourly limit."""
        ...

    def cancel_owner(self, owner: str) -> int:
        """Cancel every queued and running job of ``owner``; returns how many."""
        ...

    def pending(self, owner: str) -> int: ...


class Styler(Protocol):
    """Where the styling pipeline (handlers/pipeline.py) runs for the front: in this process
    (`LocalStyler`) or on `darkroom worker`s through a broker (bot/scale/)."""

    keeps_inputs: bool  # the downloaded inputs can stay in this process's memory afterwards

    async def style(self, work, platform: Platform, held: list, on_upload) -> object:
        """Run the pipeline for ``work`` and return its Outcome. Cancelling the awaiting task
        stops the work (and, on a worker, its delivery)."""
        ...
