"""Stopping engine work that runs in another thread.

An asyncio task that awaits a worker thread can be cancelled, but the thread goes on: the decode
child keeps decoding and onnxruntime keeps running. A `Cancellation` is handed to the work when
it starts; `cancel()` (from any thread) kills the decode child and sets ``terminate`` on the
onnxruntime run options, so the work really stops within milliseconds.
"""

from __future__ import annotations

import os
import signal
import threading

from .errors import InferenceError


class Cancelled(InferenceError):
    """The work was cancelled while it ran (erasure, shutdown)."""


class Cancellation:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._children: set[int] = set()
        self._run_options = None
        self._stoppers: list = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            for pid in self._children:
                _kill(pid)
            if self._run_options is not None:
                self._run_options.terminate = True
            for stop in self._stoppers:
                stop()

    def check(self) -> None:
        """Raise `Cancelled` if cancelled: called between steps of the work."""
        if self._cancelled:
            raise Cancelled("cancelled")

    # -- what cancelling stops ---------------------------------------------------------------

    def add_child(self, pid: int) -> None:
        """A decode child that `cancel()` must kill (at once, if already cancelled)."""
        with self._lock:
            self._children.add(pid)
            if self._cancelled:
                _kill(pid)

    def remove_child(self, pid: int) -> None:
        """Called before the child is reaped, so a reused pid is never killed."""
        with self._lock:
            self._children.discard(pid)

    def add_stopper(self, stop) -> None:
        """A callable that stops running work (e.g. an OpenVINO request's ``cancel``); called
        on `cancel()`, at once if already cancelled."""
        with self._lock:
            self._stoppers.append(stop)
            if self._cancelled:
                stop()

    def remove_stopper(self, stop) -> None:
        with self._lock:
            if stop in self._stoppers:
                self._stoppers.remove(stop)

    def run_options(self):
        """The onnxruntime RunOptions for every run of this work; `cancel()` terminates them."""
        with self._lock:
            if self._run_options is None:
                import onnxruntime as ort

                options = ort.RunOptions()
                options.log_severity_level = 4  # a terminated run is expected, not an error to log
                options.terminate = self._cancelled
                self._run_options = options
            return self._run_options


def run_options(cancel: Cancellation | None):
    """``cancel.run_options()``, or None (onnxruntime's defaults) without a cancellation."""
    return None if cancel is None else cancel.run_options()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
