"""Decoding in a child process the kernel can stop: what makes a hostile file cost at most a
few seconds of CPU and a bounded amount of memory, and never a file on disk.

`isolated` forks the child from the bot; `served` has a small decode server fork it instead
(`DecodeServer`), which is cheaper than forking the whole bot. Either way each decode gets a
new single-use child with every limit in `DecodeLimits`, and the pixels come back through
anonymous shared memory. `inference/imageio.py` says what the child runs.
"""

from __future__ import annotations

import ctypes
import faulthandler
import gc
import json
import mmap
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from .cancel import Cancellation, Cancelled
from .errors import (
    CorruptImage,
    EmptyImage,
    ImageRejected,
    TooComplex,
    TooManyBytes,
    TooManyPixels,
    TooSmall,
    UnsupportedFormat,
)


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    max_side: int = 1280
    min_side: int = 32
    # Scans in one JPEG. libjpeg's default progression writes 10 scans for a colour photo (6
    # for grey), mozjpeg and jpegli about as many, Photoshop 3 to 5; a scan bomb repeats scans
    # thousands of times, each one a pass over every block of the picture (about 5 ms at 48 MP
    # here, measured). 100 leaves a wide margin for real files (a phone's multi-picture JPEG
    # adds a few more) and keeps the worst allowed file well under a second.
    max_scans: int = 100
    # CPU seconds one decode may use: its child process gets SIGXCPU past this and SIGKILL a
    # second later (RLIMIT_CPU). A 49 MP RGBA PNG, the slowest real input, takes 1.3 s on a quiet
    # Zen 4 core (flattening the alpha included); 2 s refused it once in a full test run on a
    # busy machine, and an older CPU is slower still. A scan bomb is refused by its scan count.
    cpu_seconds: int = 4
    # Wall-clock seconds before the child is killed whatever it is doing (e.g. starved of CPU
    # on a busy machine, or stuck): generous, the CPU limit is the real bound.
    wall_seconds: float = 20.0
    # Memory the child may allocate beyond what it shares with the bot (RLIMIT_DATA): a 50 MP
    # RGBA PNG, the largest real input, needs about 450 MB while it is flattened and fitted.
    memory_bytes: int = 1024 * 1024 * 1024


# -- decoding in a child process --------------------------------------------------------------

_REFUSALS = {cls.reason: cls for cls in (EmptyImage, TooManyBytes, TooManyPixels, TooSmall, UnsupportedFormat, CorruptImage, TooComplex)}


def isolated(work, data: bytes | bytearray, limits: DecodeLimits, cancel: Cancellation | None = None) -> np.ndarray:
    """Run ``work(data, limits)`` (a decoder returning an HxWx3 uint8 array no larger than
    ``limits.max_side`` on each side) in a forked child process and return its array.

    * The child has ``limits.cpu_seconds`` of CPU (RLIMIT_CPU, enforced by the kernel) and
      ``limits.wall_seconds`` of wall time; a bomb of any kind is killed, not waited for.
    * Pixels come back through an anonymous ``MAP_SHARED`` mapping made before the fork: memory
      only, in no file system (not even /dev/shm). The child's heap (the full-size picture,
      libjpeg's and Pillow's buffers, every intermediate copy) goes when it exits.
    * A crash of the decoder (a hostile file meeting a bug in a C library) only ends the child.
    * ``cancel`` kills the child at once.
    The child reports through a pipe in a fixed JSON form, and the parent trusts nothing it says
    beyond what it checks: a child that ran hostile input is not trusted with a pickle.
    """
    if cancel is not None:
        cancel.check()
    side = limits.max_side
    capacity = min(side * side, limits.max_pixels) * 3
    shared = mmap.mmap(-1, max(capacity, 1), flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    report_r, report_w = os.pipe()
    parent = os.getpid()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a threaded process may deadlock the child: a child
        # that takes a lock another thread held at the fork. This one only decodes with Pillow
        # and numpy (no logging, no onnxruntime, no asyncio) and leaves with os._exit; should it
        # ever hang, the wall-clock limit kills it.
        warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(report_r)
        _child(work, data, limits, shared, report_w, parent)
    os.close(report_w)
    report, timed_out, status = b"", True, 0
    try:
        if cancel is not None:
            cancel.add_child(pid)
        report, timed_out = _read_report(report_r, limits.wall_seconds)
    finally:
        if cancel is not None:
            cancel.remove_child(pid)  # before reaping it: until then the pid cannot be reused
        if timed_out:
            _kill(pid)
        _, status = os.waitpid(pid, 0)
        os.close(report_r)
    return _answer(shared, report, status, timed_out, limits, cancel)


def _answer(shared: mmap.mmap, report: bytes, status: int, timed_out: bool, limits: DecodeLimits, cancel: Cancellation | None) -> np.ndarray:
    """The child's picture in ``shared``, after checking how it ended and what it says."""
    side = limits.max_side
    capacity = min(len(shared), max(min(side * side, limits.max_pixels) * 3, 1))
    killed = _failure(status, timed_out, limits)
    if cancel is not None and cancel.cancelled:
        shared.close()
        raise Cancelled("decoding was cancelled")
    if killed:
        shared.close()
        raise killed
    try:
        message = json.loads(report.decode("ascii"))
        if "error" in message:
            raise _REFUSALS.get(message["error"], CorruptImage)(str(message.get("detail", ""))[:200])
        height, width = int(message["height"]), int(message["width"])
    except ImageRejected:
        shared.close()
        raise
    except Exception:
        shared.close()
        raise CorruptImage("the decoder gave no usable answer") from None
    if not (0 < height <= side and 0 < width <= side and height * width * 3 <= capacity):
        shared.close()
        raise CorruptImage("the decoder answered with an impossible size")
    # A view of the shared memory, not a copy: the array is the one place the pixels are, and
    # dropping it unmaps them.
    return np.frombuffer(shared, dtype=np.uint8, count=height * width * 3).reshape(height, width, 3)


# -- the decode server ------------------------------------------------------------------------
#
# Forking the bot for every decode cost more than the decode: the bot holds ~440 MB (models,
# runtimes, OpenVINO's buffers), so each fork copied its page tables (15 ms of CPU), the child's
# first writes copied pages, and while the child lived every page the bot wrote was copied too:
# a network running beside a decode took ~12% more CPU (bench/stages.py). The children now come
# from a decode server: a fresh interpreter (nothing shared with the bot's memory, ~50 MB) that
# only forks. Each decode still gets a new child with every limit above, and the pixels still
# come back in shared memory that is in no file system: a memfd, held only by the array's
# mapping (and the descriptor Python's mmap keeps with it), gone when the array is dropped.


class ServerGone(RuntimeError):
    """The decode server did not answer (it died): the decode runs in a child of the bot."""


def served(work, data: bytes | bytearray, limits: DecodeLimits, cancel: Cancellation | None = None) -> np.ndarray:
    """`isolated`, with the child forked by a decode server. ``work`` must be a module-level
    function (the server imports it by name). Falls back to `isolated` if no server can run."""
    if cancel is not None:
        cancel.check()
    server = None if "<locals>" in work.__qualname__ else DecodeServer.take()
    if server is None:
        return isolated(work, data, limits, cancel)
    try:
        rgb = server.run(work, data, limits, cancel)
    except ServerGone:
        server.close()
        return isolated(work, data, limits, cancel)
    except BaseException:
        # A refused picture (corrupt, too complex, cancelled) came back through a finished
        # exchange: the server is ready for the next one. Anything else left the exchange
        # half-way: that server goes. Either way it is never left running unowned (each one
        # once leaked per refused picture: 500 of them, 13 GB, in one test run).
        if server.settled:
            DecodeServer.give_back(server)
        else:
            server.close()
        raise
    DecodeServer.give_back(server)
    return rgb


class DecodeServer:
    """One decode server process; `take` and `give_back` keep the idle ones (one per decode
    running at once, started on first need)."""

    MAX_IDLE = 4
    _idle: list[DecodeServer] = []
    _all: list[DecodeServer] = []
    _lock = threading.Lock()

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", f"from inference.isolation import _serve; _serve({theirs.fileno()}, {os.getpid()})"],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                close_fds=True, start_new_session=False,
            )
        self.sock = ours
        self.pid = self.process.pid
        self.settled = True  # no exchange half-way: the server can take the next picture
        self.owner = os.getpid()  # a forked copy of this process must not talk to it too

    @classmethod
    def take(cls) -> DecodeServer | None:
        with cls._lock:
            if any(s.owner != os.getpid() for s in cls._all):  # we are a fork: those are the parent's
                cls._idle[:] = [s for s in cls._idle if s.owner == os.getpid()]
                cls._all[:] = [s for s in cls._all if s.owner == os.getpid()]
            while cls._idle:
                server = cls._idle.pop()
                if server.process.poll() is None:
                    return server
                cls._all.remove(server)
                server.sock.close()
        try:
            server = cls()
        except OSError:
            return None
        with cls._lock:
            cls._all.append(server)
        return server

    @classmethod
    def give_back(cls, server: DecodeServer) -> None:
        with cls._lock:
            if len(cls._idle) < cls.MAX_IDLE:
                cls._idle.append(server)
                return
        server.close()

    @classmethod
    def start(cls) -> None:
        """Start one now (engine start-up), so the first photo does not wait for it."""
        server = cls.take()
        if server is not None:  # else decodes fork from the bot itself, as before
            cls.give_back(server)

    @classmethod
    def pids(cls) -> list[int]:
        with cls._lock:
            return [s.pid for s in cls._all if s.process.poll() is None]

    def close(self) -> None:
        with DecodeServer._lock:
            if self in DecodeServer._all:
                DecodeServer._all.remove(self)
        self.sock.close()  # the server leaves when its socket closes
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _receive(self) -> dict:
        try:
            message = self.sock.recv(4096)
        except OSError:
            message = b""
        if not message:
            raise ServerGone("the decode server closed its socket")
        return json.loads(message)

    def run(self, work, data: bytes | bytearray, limits: DecodeLimits, cancel: Cancellation | None) -> np.ndarray:
        self.settled = False
        side = limits.max_side
        capacity = max(min(side * side, limits.max_pixels) * 3, 1)
        pixels_fd = os.memfd_create("darkroom-pixels", os.MFD_CLOEXEC)
        input_fd = os.memfd_create("darkroom-input", os.MFD_CLOEXEC)
        report_r, report_w = os.pipe()
        try:
            os.ftruncate(pixels_fd, capacity)
            shared = mmap.mmap(pixels_fd, capacity, flags=mmap.MAP_SHARED)
            os.ftruncate(input_fd, max(len(data), 1))
            given = mmap.mmap(input_fd, max(len(data), 1), flags=mmap.MAP_SHARED)
            given[: len(data)] = data
            header = {"work": f"{work.__module__}:{work.__qualname__}", "size": len(data), "limits": _limits_dict(limits)}
            try:
                socket.send_fds(self.sock, [json.dumps(header).encode()], [pixels_fd, input_fd, report_w])
            except OSError:
                raise ServerGone("the decode server is gone") from None
        except BaseException:
            os.close(report_r)
            raise
        finally:
            for fd in (pixels_fd, input_fd, report_w):
                os.close(fd)
        self.sock.settimeout(limits.wall_seconds + 10)  # a server that hangs is given up on
        try:
            pid = int(self._receive()["pid"])
        except BaseException:
            os.close(report_r)
            given[:] = bytes(len(given))
            given.close()
            shared.close()
            raise
        report, timed_out, status = b"", True, 0
        try:
            if cancel is not None:
                cancel.add_child(pid)
            report, timed_out = _read_report(report_r, limits.wall_seconds)
            if timed_out:
                _kill(pid)
            status = int(self._receive()["status"])  # the server waits, it has not reaped it yet
        finally:
            if cancel is not None:
                cancel.remove_child(pid)  # before the server reaps it: the pid cannot be reused
            try:
                self.sock.send(b"reap")
            except OSError:
                pass
            os.close(report_r)
            given[:] = bytes(len(given))  # the photo's bytes, as they were handed over
            given.close()
        self.settled = True  # the child is reaped; what it answered is read below
        return _answer(shared, report, status, timed_out, limits, cancel)


def _limits_dict(limits: DecodeLimits) -> dict:
    return asdict(limits)


_PR_SET_DUMPABLE = 4


def _serve(fd: int, bot: int) -> None:
    """The decode server's loop: for each request, fork a child that runs `_child` on it, tell
    the bot its pid, wait for it without reaping, tell the bot how it ended, and reap it when the
    bot has forgotten the pid."""
    # No core dump of a decode child, in a file or piped to a collector: the bot's hardening
    # (bot/hardening.py) reaches its own children by inheritance, but exec resets "dumpable",
    # so this process, whose children hold photos, sets both again.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: RLIMIT_CORE is what there is
    faulthandler.disable()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # the bot's to handle; it closes our socket
    _die_with_parent(bot)
    sock = socket.socket(fileno=fd)
    gc.freeze()  # the children copy fewer pages
    try:
        _serve_requests(sock)
    except BaseException:
        pass  # no traceback on the bot's stderr: the bot sees the socket close and decodes itself
    os._exit(0)


def _serve_requests(sock: socket.socket) -> None:
    me = os.getpid()
    while True:
        message, fds, _, _ = socket.recv_fds(sock, 4096, 3)
        if not message:
            return  # the bot closed its end (or died)
        header = json.loads(message)
        pixels_fd, input_fd, report_w = fds
        module, _, name = header["work"].partition(":")
        pid = os.fork()
        if pid == 0:
            sock.close()
            size = int(header["size"])
            shared = mmap.mmap(pixels_fd, 0, flags=mmap.MAP_SHARED)
            with mmap.mmap(input_fd, max(size, 1), flags=mmap.MAP_SHARED) as given:
                data = given[:size]
            for f in (pixels_fd, input_fd):
                os.close(f)
            try:
                work = sys.modules.get(module) or __import__(module, fromlist=[name])
                for part in name.split("."):
                    work = getattr(work, part)
            except Exception:
                os._exit(1)
            _child(work, data, DecodeLimits(**header["limits"]), shared, report_w, me)
        for f in fds:
            os.close(f)
        sock.send(json.dumps({"pid": pid}).encode())
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        assert info is not None  # WEXITED without WNOHANG waits for the child
        status = info.si_status << 8 if info.si_code == os.CLD_EXITED else info.si_status
        sock.send(json.dumps({"status": status}).encode())
        sock.recv(16)  # "reap" (or the bot is gone): the pid is no longer the bot's to kill
        os.waitpid(pid, 0)


def _child(work, data, limits: DecodeLimits, shared: mmap.mmap, report_w: int, parent: int) -> None:
    # No garbage collection in here: a collection runs the finalizers of whatever the parent left
    # for it (an HTTP client, a connection, a thread pool), and one that takes a lock another
    # thread of the parent held at the fork hangs until the wall-clock limit. This process lives
    # for one decode and leaves with os._exit; its memory goes with it.
    gc.disable()
    code = 0
    try:
        # No core dump of a picture, and no traceback of a crash on the bot's stderr.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        faulthandler.disable()
        # Signals meant for the bot (Ctrl-C reaches the whole process group, systemd's stop the
        # whole cgroup) are the bot's to handle: it cancels, and cancelling kills this child.
        # The parent's asyncio wake-up pipe is inherited and must not hear them from here.
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        _die_with_parent(parent)
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
        _limit_memory(limits.memory_bytes)
        try:
            rgb = work(data, limits)
            height, width = rgb.shape[:2]
            if rgb.dtype != np.uint8 or rgb.shape != (height, width, 3) or height * width * 3 > len(shared):
                raise CorruptImage("decoded to an unexpected shape")
            np.frombuffer(shared, dtype=np.uint8, count=rgb.size).reshape(rgb.shape)[...] = rgb
            message = {"height": height, "width": width}
        except ImageRejected as exc:
            message = {"error": exc.reason, "detail": exc.detail}
        except MemoryError:
            message = {"error": TooManyPixels.reason, "detail": "out of memory"}
        except Exception as exc:
            message = {"error": CorruptImage.reason, "detail": type(exc).__name__}
        os.write(report_w, json.dumps(message).encode("ascii"))
    except BaseException:
        code = 1
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the parent's buffers


def _limit_memory(budget: int) -> None:
    """RLIMIT_DATA counts the heap and private writable mappings, the bot's included (shared
    with this child since the fork): allow ``budget`` bytes on top of those."""
    try:
        with open("/proc/self/status") as f:
            data = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))
    except (OSError, StopIteration, ValueError):
        return  # not Linux: the CPU limit still bounds the decode
    resource.setrlimit(resource.RLIMIT_DATA, (data + budget, data + budget))


def _die_with_parent(parent: int) -> None:
    """SIGKILL this child if the bot dies (kill -9 included), instead of decoding for nobody."""
    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the CPU limit still ends it
    if os.getppid() != parent:  # the bot died before the line above
        os._exit(1)


def _read_report(report_r: int, wall_seconds: float) -> tuple[bytes, bool]:
    """The child's report, read until it closes the pipe (it exits); True if the child must be
    killed (time ran out, or it is not behaving like our decoder)."""
    deadline = time.monotonic() + wall_seconds
    chunks: list[bytes] = []
    poller = select.poll()
    poller.register(report_r, select.POLLIN | select.POLLHUP)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"", True
        if not poller.poll(min(left, 1.0) * 1000):
            continue
        chunk = os.read(report_r, 4096)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        if sum(map(len, chunks)) > 4096:
            return b"", True  # a child that talks this much is not our decoder any more


def _failure(status: int, timed_out: bool, limits: DecodeLimits) -> ImageRejected | None:
    if timed_out:
        return TooComplex(f"decoding took more than {limits.wall_seconds:g} s")
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum in (signal.SIGXCPU, signal.SIGKILL):
            return TooComplex(f"decoding used more than {limits.cpu_seconds} s of CPU")
        return CorruptImage(f"the decoder crashed ({signal.Signals(signum).name})")
    if os.WEXITSTATUS(status) != 0:
        return CorruptImage("the decoder failed")
    return None


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


