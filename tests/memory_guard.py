"""The test run's memory: bounded, and reported at the end.

One fresh-clone CI run on a busy machine was killed by the OOM killer with pytest at 22 GB RSS,
taking the machine with it; other runs stayed under 2.5 GB. So a watchdog thread looks at this
process's RSS every second and at every process below it (bots, workers, browsers, decode
children) every two seconds:

- pytest itself above the limit: one clear line names the test that was running, and the run is
  interrupted (KeyboardInterrupt in the main thread, so fixtures still tear down and every child
  is stopped); if the main thread does not answer within 30 s (stuck in C), the process exits.
- a child above the limit: one clear line names it, and that child is killed; the test waiting
  for it fails on its own.

The limit is DARKROOM_TEST_RSS_LIMIT_MB (default 6144; 0 switches the watchdog off). A cgroup
would be the real bound but is not available here, and RLIMIT_AS (ulimit -v) would break
Chromium and the runtimes, which reserve far more address space than they use.

At the end the run prints its peak RSS: pytest's own high-water mark (VmHWM; with pytest-xdist
the largest of the controller's and the workers') and the largest child's (the peak of every
child reaped, from getrusage, and of every child still running, from the samples). A child
forked from pytest without exec (a decode child) counts the pages it still shares with pytest.
"""

from __future__ import annotations

import _thread
import os
import resource
import signal
import sys
import threading
from dataclasses import dataclass, field

import pytest

LIMIT_ENV = "DARKROOM_TEST_RSS_LIMIT_MB"
DEFAULT_LIMIT_MB = 6144
GRACE_S = 30.0  # after the interrupt, how long the main thread has to stop before the process exits


def proc_kb(pid: int | str, name: str, field_name: str) -> int:
    """A "Field: N kB" line of /proc/PID/<name> in kB (0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/{name}") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def status_kb(pid: int | str, field_name: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/PID/status in kB."""
    return proc_kb(pid, "status", field_name)


def pss_kb(pid: int | str) -> int:
    """The process's proportional share of its resident memory (/proc/PID/smaps_rollup), in kB:
    pages shared with others (a fork's copy-on-write pages, libraries) count once in a sum, where
    the sum of RSS counted them in every process (it once printed 27 GB on a 23 GB machine)."""
    return proc_kb(pid, "smaps_rollup", "Pss")


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children, their children, ...)."""
    below: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        below.setdefault(parent, []).append(int(entry))
    found, queue = [], list(below.get(root, []))
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue += below.get(pid, [])
    return found


def command_of(pid: int) -> str:
    """The command line, on one line and short."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return " ".join(f.read().decode(errors="replace").split())[:120]
    except OSError:
        return "?"


def mb(kb: int) -> int:
    return round(kb / 1024)


@dataclass
class Peak:
    pytest_kb: int = 0  # this process's VmHWM
    child_kb: int = 0  # the largest single child, reaped or sampled alive
    together_kb: int = 0  # this process and all below it at one sample (PSS: shared pages once)
    workers: dict[str, Peak] = field(default_factory=dict)  # pytest-xdist: each worker's own

    def as_dict(self) -> dict:
        return {"pytest_kb": self.pytest_kb, "child_kb": self.child_kb, "together_kb": self.together_kb}


class MemoryGuard:
    """A pytest plugin (registered by tests/conftest.py)."""

    def __init__(self, limit_mb: int, period_s: float = 1.0) -> None:
        self.limit_kb = limit_mb * 1024
        self.period_s = period_s
        self.peak = Peak()
        self.current_test = "(between tests)"
        self.stopped: str | None = None  # why the watchdog stopped the run
        self.killed: list[str] = []  # children killed for their size
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        # The terminal, as it is now (pytest_configure, between captures): during a test pytest
        # captures file descriptor 2, and a line written there would only show if that test failed.
        self._terminal = os.dup(sys.__stderr__.fileno())

    # -- the watchdog ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="darkroom-memory-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        me, tick = os.getpid(), 0
        while not self._done.wait(self.period_s):
            tick += 1
            own = status_kb(me, "VmRSS")
            if tick % 2 == 0:
                together = pss_kb(me)
                for pid in descendants(me):
                    rss = status_kb(pid, "VmRSS")
                    together += pss_kb(pid)
                    self.peak.child_kb = max(self.peak.child_kb, rss)
                    if self.limit_kb and rss > self.limit_kb:
                        self._kill_child(pid, rss)
                self.peak.together_kb = max(self.peak.together_kb, together)
            if self.limit_kb and own > self.limit_kb and self.stopped is None:
                self._stop_the_run(own)

    def _kill_child(self, pid: int, rss_kb: int) -> None:
        line = (
            f"a child process ({command_of(pid)}) reached {mb(rss_kb)} MB RSS during {self.current_test}, "
            f"above the limit of {mb(self.limit_kb)} MB ({LIMIT_ENV}); killing it"
        )
        self._say(line)
        self.killed.append(line)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    def _stop_the_run(self, rss_kb: int) -> None:
        self.stopped = (
            f"pytest reached {mb(rss_kb)} MB RSS during {self.current_test}, above the limit of "
            f"{mb(self.limit_kb)} MB ({LIMIT_ENV}); the run was stopped"
        )
        self._say(self.stopped)
        _thread.interrupt_main()
        if self._done.wait(GRACE_S):
            return
        self._say(f"the run did not stop within {GRACE_S:.0f} s of the interrupt; exiting")
        os._exit(3)

    def _say(self, line: str) -> None:
        os.write(self._terminal, f"\nmemory guard: {line}\n".encode())

    # -- what the run used -------------------------------------------------------------------

    def measure(self) -> Peak:
        self.peak.pytest_kb = status_kb("self", "VmHWM")
        reaped = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux
        self.peak.child_kb = max(self.peak.child_kb, reaped)
        self.peak.together_kb = max(self.peak.together_kb, self.peak.pytest_kb)
        return self.peak

    def summary(self) -> str:
        peak = self.measure()
        own, child, together = peak.pytest_kb, peak.child_kb, peak.together_kb
        detail = ""
        if peak.workers:
            # The workers are children of the controller: their own peaks are "pytest", what
            # they started is "child".
            own = max([own, *(w.pytest_kb for w in peak.workers.values())])
            child = max(w.child_kb for w in peak.workers.values())
            detail = " (" + ", ".join(
                f"{name} {mb(w.pytest_kb)}/{mb(w.child_kb)}" for name, w in sorted(peak.workers.items())
            ) + ")"
        return (
            f"peak RSS of the test run: {mb(own)} MB (pytest) / {mb(child)} MB (largest child); "
            f"{mb(together)} MB at most together (sampled, PSS){detail}; limit {mb(self.limit_kb) or 'off'}"
            f"{' MB' if self.limit_kb else ''} ({LIMIT_ENV})"
        )

    # -- pytest hooks ------------------------------------------------------------------------

    def pytest_sessionstart(self, session) -> None:
        self.start()

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        self.current_test = nodeid

    def pytest_sessionfinish(self, session) -> None:
        self.stop()
        if self.stopped or self.killed:
            session.exitstatus = max(int(session.exitstatus), 1)
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # a pytest-xdist worker: tell the controller
            workeroutput["darkroom_peak_rss"] = self.measure().as_dict()
            workeroutput["darkroom_memory_guard"] = [*filter(None, [self.stopped]), *self.killed]

    def pytest_terminal_summary(self, terminalreporter) -> None:
        for line in [*filter(None, [self.stopped]), *self.killed]:
            terminalreporter.write_line(f"memory guard: {line}", red=True)
        terminalreporter.write_line(self.summary())

    @pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown without it
    def pytest_testnodedown(self, node, error) -> None:
        """pytest-xdist (controller): a worker finished; keep its peaks and its guard's findings."""
        output = getattr(node, "workeroutput", None) or {}
        name = node.gateway.id
        if "darkroom_peak_rss" in output:
            self.peak.workers[name] = Peak(**output["darkroom_peak_rss"])
        self.killed += [f"{name}: {line}" for line in output.get("darkroom_memory_guard", [])]


def limit_from_environment() -> int:
    raw = os.environ.get(LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_LIMIT_MB
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{LIMIT_ENV}={raw!r} is not a whole number of MB (0 switches the memory guard off)") from None
    return max(value, 0)
