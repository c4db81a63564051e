"""Every hostile input of the corpus, through the engine, through the bot and through the CLI.

For each: the expected typed refusal or a correct picture, bounded memory, a kind message (or
the styled photo), a service that keeps serving, a zeroed input buffer, exactly one line on
stderr for the operator, and no file written anywhere but the CLI's own output directory.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import tracemalloc
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot import cli
from handlers.replies import EditText, SendPhotos, SendText
from handlers.texts import t
from inference import StyleRequest
from inference.errors import CorruptImage, EmptyImage, TooComplex, TooManyBytes, TooManyPixels, TooSmall, UnsupportedFormat
from inference.imageio import decode, decode_here
from tests.hostile.corpus import CORPUS_NAMES, Case, corpus
from tests.privacy_scan import SKIP_DIRS

MEMORY_LIMIT = 300 * 1024 * 1024
CASES = pytest.mark.parametrize("case", corpus(), ids=CORPUS_NAMES)
OK_CASES = [c for c in corpus() if c.ok]

# What the person is told for each refusal (handlers/photos.py picks the text by reason).
MESSAGE = {
    EmptyImage: "photo.corrupt",
    CorruptImage: "photo.corrupt",
    UnsupportedFormat: "photo.unsupported",
    TooManyPixels: "photo.too_many_pixels",
    TooSmall: "photo.too_small",
    TooManyBytes: "photo.too_large",
    TooComplex: "photo.too_complex",
}


# -- measuring ----------------------------------------------------------------------------------


@dataclass
class Memory:
    traced_peak: int = 0  # Python and numpy allocations (tracemalloc)
    rss_peak: int | None = None  # the whole process, Pillow's own buffers included (Linux)


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


@contextlib.contextmanager
def measured():
    """tracemalloc's peak, and the growth of the process's peak RSS where the kernel lets us
    reset it (tracemalloc does not see memory Pillow allocates in C)."""
    memory = Memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        rss_before = _status("VmRSS")
    except OSError:
        rss_before = None
    tracemalloc.start()
    try:
        yield memory
    finally:
        memory.traced_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        if rss_before is not None:
            memory.rss_peak = _status("VmHWM") - rss_before


def assert_bounded(memory: Memory) -> None:
    assert memory.traced_peak < MEMORY_LIMIT, f"traced peak {memory.traced_peak / 1e6:.0f} MB"
    if memory.rss_peak is not None:
        assert memory.rss_peak < MEMORY_LIMIT, f"peak RSS grew by {memory.rss_peak / 1e6:.0f} MB"


# -- "nothing written" --------------------------------------------------------------------------


def _common_bytes() -> bytes:
    """What every encoder writes whatever the picture (standard Huffman tables, headers): a
    slice of the input found in here proves nothing."""
    parts = []
    for quality in (75, 90, 92, 95):
        out = io.BytesIO()
        Image.new("RGB", (64, 64), (128, 128, 128)).save(out, "JPEG", quality=quality)
        parts.append(out.getvalue())
    return b"|".join(parts)


COMMON = _common_bytes()


def needles(data: bytes) -> list[bytes]:
    """Slices of the input that would give it away if found in a file; only distinctive ones."""
    if len(data) < 256:
        return []
    size = len(data)
    picks = [data[size * 3 // 5 : size * 3 // 5 + 32], data[size * 4 // 5 : size * 4 // 5 + 32], data[-34:-2]]
    return [p for p in picks if len(set(p)) >= 8 and p not in COMMON]


def _files(root: Path, skip: Path | None = None) -> dict[Path, tuple[int, int]]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and (skip is None or here / d != skip)]
        for name in filenames:
            path = here / name
            try:
                stat = path.lstat()
            except OSError:
                continue
            found[path] = (stat.st_mtime_ns, stat.st_size)
    return found


@dataclass
class WriteWatch:
    """Snapshot of tmp_path (strict: only allowed paths may change) and of the system temp
    dir and the working dir (shared with other processes: whatever changed there must not
    contain the input)."""

    tmp_path: Path
    data: bytes
    allowed: list[Path] = field(default_factory=list)

    def __enter__(self):
        self.own = _files(self.tmp_path)
        self.shared_roots = [Path(tempfile.gettempdir()), Path.cwd()]
        self.shared = {root: _files(root, skip=self.tmp_path) for root in self.shared_roots}
        return self

    def __exit__(self, *exc_info):
        if exc_info[0] is not None:
            return False
        after = _files(self.tmp_path)
        changed = [p for p, state in after.items() if self.own.get(p) != state]
        unexpected = [p for p in changed if not any(p == a or a in p.parents for a in self.allowed)]
        assert unexpected == [], f"files written: {unexpected}"
        marks = needles(self.data)
        for root in self.shared_roots:
            now = _files(root, skip=self.tmp_path)
            for path, state in now.items():
                if self.shared[root].get(path) == state or state[1] > 200 * 1024 * 1024:
                    continue
                try:
                    content = path.read_bytes()
                except OSError:
                    continue
                assert not any(m in content for m in marks), f"the input's bytes were written to {path}"
        return False


# -- (a) the engine -----------------------------------------------------------------------------


@CASES
def test_engine_gives_the_typed_refusal_or_a_correct_jpeg_in_bounded_memory(engine, case: Case, tmp_path):
    request = StyleRequest("film")
    Image.core.reset_stats()
    with WriteWatch(tmp_path, case.data), measured() as memory, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        if case.ok:
            result = engine.stylize(case.data, request)
        else:
            with pytest.raises(case.expected) as caught:
                engine.stylize(case.data, request)
    assert_bounded(memory)
    assert [str(w.message) for w in warned] == [], "warnings would reach the operator's stderr"
    if not case.ok:
        assert type(caught.value) is case.expected
        if case.expected is TooManyPixels:
            # The engine decodes in a child process; watch Pillow in this one.
            Image.core.reset_stats()
            with pytest.raises(TooManyPixels):
                decode_here(case.data)
            assert Image.core.get_stats()["new_count"] == 0, "pixel storage allocated for a bomb"
        return
    assert result.jpeg[:3] == b"\xff\xd8\xff"
    out = Image.open(io.BytesIO(result.jpeg))
    assert out.format == "JPEG" and out.mode == "RGB"
    assert (result.height, result.width) == case.size == (out.height, out.width)
    for needle in needles(case.data):
        assert needle not in result.jpeg  # nothing of the input is carried over (the ZIP of a polyglot)


@pytest.mark.parametrize("case", OK_CASES, ids=[c.name for c in OK_CASES])
def test_accepted_hostile_inputs_decode_to_the_right_picture(case: Case):
    rgb = decode(case.data)
    assert rgb.shape[:2] == case.size
    if case.reference is not None:
        error = np.abs(rgb.astype(np.int16) - case.reference.astype(np.int16)).mean()
        assert error <= case.tolerance, f"mean error {error:.2f}"


# -- (b) the bot --------------------------------------------------------------------------------


def last_status(harness) -> str:
    texts = [r.text for r in harness.platform.replies() if isinstance(r, (EditText, SendText))]
    return texts[-1]


@CASES
async def test_bot_answers_kindly_keeps_serving_and_zeroes_the_buffer(harness, case: Case, small_portrait, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    alice = harness.person("alice")
    await harness.agree(alice)
    with WriteWatch(tmp_path, case.data, allowed=[tmp_path / "db.sqlite3", tmp_path / "db.sqlite3-wal", tmp_path / "db.sqlite3-shm", tmp_path / "db.sqlite3-journal"]):
        await harness.photo(alice, case.data, caption="film")
        await harness.idle()
        sent = harness.platform.replies(SendPhotos)
        if case.ok:
            assert len(sent) == 1, last_status(harness)
            out = Image.open(io.BytesIO(sent[0].photos[0].jpeg))
            assert (out.height, out.width) == case.size
            assert last_status(harness).startswith("Done ✓")
        else:
            assert sent == []
            limit_mb = harness.ctx.settings.max_input_bytes // (1024 * 1024)
            assert last_status(harness) == t(MESSAGE[case.expected], "en", limit_mb=limit_mb)
        for buffer in harness.platform.buffers:
            assert len(buffer) == 0 or not any(buffer), "the downloaded input is still in memory"

        # the bot keeps serving
        await harness.photo(alice, small_portrait, caption="film")
        await harness.idle()
        assert len(harness.platform.replies(SendPhotos)) == len(sent) + 1
        assert last_status(harness).startswith("Done ✓")
        for buffer in harness.platform.buffers:
            assert len(buffer) == 0 or not any(buffer)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "Traceback" not in logged
    for needle in needles(case.data):
        assert needle.decode("latin-1") not in logged and repr(needle)[2:-1] not in logged


# -- (c) the CLI --------------------------------------------------------------------------------


@CASES
def test_cli_prints_one_line_naming_the_file_or_writes_the_picture(engine, monkeypatch, capsys, case: Case, tmp_path):
    monkeypatch.setattr(cli, "_engine", lambda settings=None: engine)  # the session's verified engine (building one takes a second)
    path = tmp_path / f"{case.name}.jpg"  # renamed as .jpg, as people do
    path.write_bytes(case.data)
    out_dir = tmp_path / "out"
    with WriteWatch(tmp_path, case.data, allowed=[out_dir]):
        code = cli.main(["stylize", str(path), "-o", str(out_dir), "--style", "film"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    outputs = sorted(out_dir.iterdir())
    if case.ok:
        assert code == 0, captured.err
        assert captured.err == ""
        assert [p.name for p in outputs] == [f"{case.name}-film.jpg"]
        written = outputs[0].read_bytes()
        with Image.open(io.BytesIO(written)) as image:
            assert image.format == "JPEG" and (image.height, image.width) == case.size
        assert str(path) in captured.out
    else:
        assert code == 1
        lines = captured.err.splitlines()
        assert len(lines) == 1, captured.err
        assert lines[0].startswith(f"{path}: ")
        assert lines[0] == f"{path}: {cli._REASONS[case.expected.reason]}"
        assert outputs == []


def test_cli_with_its_own_engine_reports_the_bad_file_and_styles_the_good_one(capsys, tmp_path):
    """The same through the real `darkroom stylize` start-up (settings, engine, verification)."""
    from tests.hostile.corpus import case

    bad, good = tmp_path / "broken.jpg", tmp_path / "fine.jpg"
    bad.write_bytes(case("truncated-jpeg").data)
    good.write_bytes(case("plain-jpeg").data)
    out_dir = tmp_path / "out"
    with WriteWatch(tmp_path, case("plain-jpeg").data, allowed=[out_dir]):
        code = cli.main(["stylize", str(bad), str(good), "-o", str(out_dir), "--style", "film"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err.splitlines() == [f"{bad}: the picture is damaged or truncated"]
    assert "Traceback" not in captured.out + captured.err
    assert [p.name for p in out_dir.iterdir()] == ["fine-film.jpg"]
