"""Decoding is bounded in CPU time, and cancelling really stops it (inference/imageio.py,
inference/cancel.py).

The decode runs in a forked child with RLIMIT_CPU; these tests drive that mechanism with
deliberately slow, stuck or crashing decoders, and the scan bomb of the hostile corpus. Each
property is checked both for a child forked by this process (`isolated`) and for one forked by
a decode server (`served`, what `decode` uses).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from inference.cancel import Cancellation, Cancelled
from inference.errors import CorruptImage, TooComplex, TooManyPixels
from inference.imageio import DecodeLimits, DecodeServer, decode, isolated, served
from tests.hostile.corpus import encoded, jpeg_segments, scan_bomb
from tests.processes import children, the_decode_child, wait_for


def running(pid: int) -> bool:
    """Alive (a zombie waiting for a reaper is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def burn(data, limits):
    while True:  # a decoder that never finishes (what a bomb does to libjpeg)
        pass


def sleep_forever(data, limits):
    time.sleep(3600)  # stuck without using CPU: only the wall clock can end this


def crash(data, limits):
    os.kill(os.getpid(), signal.SIGSEGV)  # a C decoder meeting a hostile file


def small_picture(data, limits):
    return np.full((40, 50, 3), 7, np.uint8)


def open_fds() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return found


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def dumpable_as_picture(data, limits):
    """The child's PR_GET_DUMPABLE, as the value of every pixel."""
    import ctypes

    return np.full((40, 50, 3), ctypes.CDLL(None).prctl(3, 0, 0, 0, 0), np.uint8)


def hog(data, limits):
    return np.ones((3 * 1024, 1024, 1024), np.uint8)  # 3 GiB


PHOTO = encoded(Image.new("RGB", (64, 48), (120, 80, 40)), "JPEG")
RUNNERS = pytest.mark.parametrize("run", [isolated, served], ids=["own child", "served child"])


# -- the scan bomb --------------------------------------------------------------------------------


def test_scan_bomb_is_refused_from_its_scan_count_without_decoding(monkeypatch):
    bomb = scan_bomb()
    assert bomb.count(b"\xff\xda") > 1000
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("a decode child was started for a scan bomb"))
    started = time.monotonic()
    with pytest.raises(TooComplex):
        decode(bomb)
    assert time.monotonic() - started < 1.0  # counted, not decoded (the decode takes seconds)


def test_real_progressive_jpegs_are_well_within_the_scan_limit():
    rgb = np.random.default_rng(2).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x010E] = "a camera"
    for mode in ("RGB", "L", "CMYK"):
        data = encoded(Image.fromarray(rgb).convert(mode), "JPEG", quality=90, progressive=True, exif=exif.tobytes())
        scans = sum(1 for marker, _ in jpeg_segments(data) if marker == 0xDA)
        assert 1 < scans <= 20 and data.count(b"\xff\xda") < DecodeLimits().max_scans / 5
        assert decode(data).shape == (300, 400, 3)


def test_the_scan_limit_counts_every_scan_libjpeg_could_read():
    ok = scan_bomb(400, 300, scans=DecodeLimits().max_scans - 10 - 1)  # 10 scans of its own
    assert decode(ok).shape == (300, 400, 3)
    with pytest.raises(TooComplex):
        decode(scan_bomb(400, 300, scans=DecodeLimits().max_scans - 10 + 1))


def test_the_scan_bomb_is_also_stopped_by_the_cpu_limit_when_the_count_is_not_enough():
    """With no scan limit at all, the child burns its CPU seconds and is killed."""
    limits = DecodeLimits(max_scans=10**9, cpu_seconds=1)
    started = time.monotonic()
    with pytest.raises(TooComplex):
        decode(scan_bomb(), limits)
    assert time.monotonic() - started < 20  # generous: 1 s of CPU on a shared machine
    assert children() == set()


# -- the child process ------------------------------------------------------------------------------


@RUNNERS
def test_a_decode_burning_cpu_is_killed_by_the_kernel_at_its_cpu_limit(run):
    started = time.monotonic()
    with pytest.raises(TooComplex, match="CPU"):
        run(burn, PHOTO, DecodeLimits(cpu_seconds=1))
    assert time.monotonic() - started < 20
    assert children() == set()


@RUNNERS
def test_a_stuck_decode_is_killed_at_the_wall_clock_limit(run):
    started = time.monotonic()
    with pytest.raises(TooComplex, match="took more than"):
        run(sleep_forever, PHOTO, DecodeLimits(wall_seconds=1.0))
    assert time.monotonic() - started < 10
    assert children() == set()


@RUNNERS
def test_a_crashing_decoder_only_ends_its_child(run):
    with pytest.raises(CorruptImage, match="SIGSEGV"):
        run(crash, PHOTO, DecodeLimits())
    assert children() == set()
    assert decode(PHOTO).shape == (48, 64, 3)  # and this process decodes on


def test_an_answer_of_an_impossible_size_is_not_believed():
    def too_wide(data, limits):
        return np.zeros((10, limits.max_side + 1, 3), np.uint8)

    with pytest.raises(CorruptImage):
        isolated(too_wide, PHOTO, DecodeLimits())


@RUNNERS
def test_pixels_come_back_in_anonymous_shared_memory_not_in_a_file(run):
    rgb = run(small_picture, PHOTO, DecodeLimits())
    assert rgb.shape == (40, 50, 3) and (rgb == 7).all() and rgb.flags.writeable
    address = rgb.__array_interface__["data"][0]
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                region = fields[5].strip() if len(fields) > 5 else ""
                break
        else:
            pytest.fail("the array is in no mapping")
    # The kernel's name for MAP_SHARED|MAP_ANONYMOUS memory, or for a memfd whose descriptor is
    # closed: backed by no file anyone can open (a POSIX shared memory object would show as
    # /dev/shm/<name>, a file as its path).
    expected = "/dev/zero (deleted)" if run is isolated else "/memfd:darkroom-pixels (deleted)"
    assert region == expected, region
    if run is served:  # and nothing of it is left once the array is dropped
        del rgb
        assert wait_for(lambda: not [fd for fd in open_fds() if "darkroom-pixels" in fd], timeout=10)  # GC and the mmap close, slow under load
    assert "s" in fields[1]  # shared with the (now gone) child


# -- cancelling ------------------------------------------------------------------------------------


@RUNNERS
def test_cancel_kills_the_running_decode_child(run):
    DecodeServer.start()  # already running: the only new process is the decode child
    cancel = Cancellation()
    outcome: dict[str, BaseException] = {}

    def decoding():
        try:
            run(sleep_forever, PHOTO, DecodeLimits(), cancel)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=decoding)
    thread.start()
    child = the_decode_child()
    assert child is not None, "no decode child started"
    assert parent_of(child) in ([os.getpid()] if run is isolated else DecodeServer.pids())
    started = time.monotonic()
    cancel.cancel()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5
    assert isinstance(outcome["error"], Cancelled)
    assert children() == set()


def test_a_cancelled_cancellation_starts_no_child(monkeypatch):
    cancel = Cancellation()
    cancel.cancel()
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked after cancel"))
    with pytest.raises(Cancelled):
        decode(PHOTO, DecodeLimits(), cancel)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_cancel_stops_a_running_network(backend):
    """Cancelling from another thread ends the run early: onnxruntime through
    RunOptions.terminate, OpenVINO through the infer request's cancel."""
    from inference import Engine, EngineConfig

    engine = Engine(EngineConfig(backend=backend))
    engine.verify()
    assert engine.choice.backend == backend
    rgb = np.random.default_rng(3).integers(0, 256, (960, 1280, 3), dtype=np.uint8)
    weights = np.zeros(26, np.float32)
    weights[0] = 1
    cancel = Cancellation()
    outcome: dict[str, object] = {}

    def run():
        try:
            for _ in range(100):  # far longer than the test waits, unless terminated
                engine.multistyle.run(rgb, weights, cancel)
            outcome["finished"] = True
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.5)
    cancel.cancel()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the run was not terminated"
    error = outcome.get("error")
    assert isinstance(error, Cancelled) or "terminate" in str(error).lower(), outcome


def test_a_decode_child_ignores_the_bots_signals_and_dies_with_it():
    """Ctrl-C or systemd's stop reach the child too: the bot decides (it cancels); and a child
    whose bot was killed is killed with it (PR_SET_PDEATHSIG)."""
    import subprocess
    import sys

    program = (
        "import os, time\n"
        "from inference.imageio import isolated, DecodeLimits\n"
        "def sleepy(data, limits):\n"
        "    print(os.getpid(), flush=True)\n"
        "    time.sleep(3600)\n"
        "isolated(sleepy, b'x', DecodeLimits(wall_seconds=3600))\n"
    )
    bot = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        child = int(bot.stdout.readline())
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(child, signum)
        time.sleep(0.3)
        assert running(child), "a signal meant for the bot ended the decode child"
        bot.kill()
        bot.wait(timeout=10)
        assert wait_for(lambda: not running(child), timeout=5), "the decode child outlived the bot"
    finally:
        bot.kill()


def test_a_served_decode_child_cannot_dump_core():
    """The bot's children inherit its hardening; the decode server was exec'd, which resets
    "dumpable", so it sets it again for the children that hold photos."""
    assert (served(dumpable_as_picture, PHOTO, DecodeLimits()) == 0).all()


def test_a_served_decode_child_ignores_the_bots_signals_and_dies_with_it():
    """As above, for a child forked by the bot's decode server: the server dies with the bot,
    and the child with the server."""
    import subprocess
    import sys

    program = (
        "import os, sys, time\n"
        "from inference.imageio import served, DecodeLimits, DecodeServer\n"
        "from tests.inference.test_decode_limits import sleep_forever\n"
        "DecodeServer.start()\n"
        "print(DecodeServer.pids()[0], flush=True)\n"
        "served(sleep_forever, b'x', DecodeLimits(wall_seconds=3600))\n"
    )
    bot = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    try:
        server = int(bot.stdout.readline())

        def child() -> int | None:
            for entry in os.listdir("/proc"):
                if entry.isdigit() and running(int(entry)):
                    try:
                        if parent_of(int(entry)) == server:
                            return int(entry)
                    except OSError:
                        pass
            return None

        assert wait_for(lambda: child() is not None, timeout=20), "no served decode child started"
        decoder = child()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(decoder, signum)
            os.kill(server, signum)
        time.sleep(0.3)
        assert running(decoder) and running(server), "a signal meant for the bot ended the decoding"
        bot.kill()
        bot.wait(timeout=10)
        assert wait_for(lambda: not running(decoder) and not running(server), timeout=5), "the decoding outlived the bot"
    finally:
        bot.kill()


@RUNNERS
def test_a_decode_allocating_too_much_memory_is_refused(run):
    with pytest.raises(TooManyPixels, match="out of memory"):
        run(hog, PHOTO, DecodeLimits(memory_bytes=512 * 1024 * 1024))
    assert children() == set()


def test_the_largest_real_input_fits_the_memory_budget():
    """A 50 MP RGBA PNG (flattened onto white, then fitted) decodes within the default limits."""
    side = 7000
    data = encoded(Image.new("RGBA", (side, side), (200, 10, 10, 128)), "PNG")
    assert decode(data).shape == (1280, 1280, 3)


def test_the_decode_child_runs_no_garbage_collection():
    """A collection in the forked child would run finalizers of the parent's garbage; one that
    takes a lock another thread held at the fork would hang the decode until the wall limit."""
    import gc

    lock = threading.Lock()
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            done.wait()

    class TakesTheLock:
        def __del__(self) -> None:
            with lock:
                pass

    def work(data, limits):
        kept = [[] for _ in range(5_000)]  # container allocations that set off a collection
        assert len(kept) == 5_000
        return np.zeros((40, 48, 3), np.uint8)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    gc.collect()
    gc.disable()
    try:
        garbage = TakesTheLock()
        garbage.cycle = garbage
        del garbage  # a cycle only the collector frees: it reaches the child
        gc.enable()  # as in a running bot; too few allocations here to collect before the fork
        started = time.monotonic()
        out = isolated(work, b"", DecodeLimits(wall_seconds=5.0))
        assert out.shape == (40, 48, 3)
        assert time.monotonic() - started < 4.0
    finally:
        gc.enable()
        done.set()
        holder.join()
        gc.collect()


def test_refused_pictures_leave_no_decode_server_behind():
    """A picture the decode child refuses gives its decode server back like any other: each one
    used to leave its server running and unowned (50 MB a refusal; 500 of them, 13 GB, in one
    full test run; a person sending broken files could do the same to the bot)."""
    truncated = encoded(Image.new("RGB", (64, 48), (10, 20, 30)), "PNG")[:-40]
    for _ in range(DecodeServer.MAX_IDLE * 3):
        with pytest.raises(CorruptImage):
            decode(truncated)
    assert 1 <= len(DecodeServer.pids()) <= DecodeServer.MAX_IDLE, DecodeServer.pids()


def test_a_server_given_back_after_a_refusal_holds_none_of_the_refused_bytes():
    """The server that handled a refused picture now takes the next one, so it must keep nothing of
    it: its memory (read from /proc/PID/mem, the process stopped) has no trace of the refused
    file's bytes."""
    from tests.memory_scan import scan_process

    canary = b"DARKROOM-REFUSED-CANARY-" + os.urandom(8).hex().encode()
    info = PngImagePlugin.PngInfo()
    info.add_text("canary", canary.decode())
    truncated = encoded(Image.new("RGB", (64, 48), (10, 20, 30)), "PNG", pnginfo=info)[:-40]
    assert canary in truncated
    for _ in range(3):
        with pytest.raises(CorruptImage):
            decode(truncated)
    servers = DecodeServer.pids()
    assert servers
    for pid in servers:
        assert scan_process(pid, [canary]) == [], f"decode server {pid} holds the refused picture's bytes"
