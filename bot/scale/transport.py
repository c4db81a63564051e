"""kombu's Redis transport, with one change: a message on Darkroom's queue that is not a kombu
message at all (not JSON, not an object, fields missing) is dropped with one log line instead of
stopping the worker. Anyone who can write to Redis can push such a message; what a worker then
runs is decided by the seal (bot/scale/protocol.py), and a well-formed message that is not
Darkroom's task is refused by Celery itself."""

from __future__ import annotations

import logging

from kombu.transport import redis

log = logging.getLogger("darkroom.workers")
# What a malformed message raises while kombu reads it: json (ValueError, UnicodeDecodeError),
# a missing field (KeyError), a field of the wrong type (TypeError, AttributeError).
MALFORMED = (ValueError, KeyError, TypeError, AttributeError)


class Channel(redis.Channel):
    def _brpop_read(self, **options):
        try:
            return super()._brpop_read(**options)
        except MALFORMED as exc:
            log.warning("dropped a message on the queue that is not a task (%s)", type(exc).__name__)
            return True  # one message was taken off the queue: the worker goes on


class Transport(redis.Transport):
    Channel = Channel


NAME = f"{__name__}:Transport"
