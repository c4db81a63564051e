"""The backend choice measured at start-up is kept in the data directory and reused while
nothing it depends on changed: the second start builds only the kept candidate and checks its
PSNR, without timing; any change of the key times again; a broken record is ignored."""

from __future__ import annotations

import json
import logging
import stat
from dataclasses import fields

import numpy as np
import pytest

import inference.backends as backends
import inference.networks as networks
from inference import load_catalogue
from inference.backends import (
    BF16,
    FP32,
    KEPT_CHOICE_FILE,
    ONNXRUNTIME,
    OPENVINO,
    BackendChoice,
    BackendPreference,
    ChoiceKey,
    KeptChoice,
    choose_runner,
    probe_portrait,
)
from inference.models import SessionPool
from inference.networks import MultiStyleNetwork
from tests.inference.test_backends import IMAGE, STYLES, Stub, stub_openvino

# -- the reuse, with stand-in runners ---------------------------------------------------------


class Counting(Stub):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def __call__(self, image, weights):
        self.calls += 1
        return super().__call__(image, weights)


def test_a_kept_choice_is_built_and_checked_but_not_timed():
    reference = Counting(ONNXRUNTIME, FP32, 0.0)
    bf16 = Counting(OPENVINO, BF16, 0.0, noise=1)
    built = []

    def build(precision):
        built.append(precision)
        return {BF16: bf16}[precision]

    kept = BackendChoice(OPENVINO, BF16, 187.0, 48.6, "auto")
    runner, choice = choose_runner(reference, build, IMAGE, STYLES, precisions=[FP32, BF16], kept=kept)
    assert runner is bf16 and built == [BF16]  # OpenVINO fp32 never built
    assert (choice.backend, choice.precision, choice.how, choice.kept) == (OPENVINO, BF16, "auto", True)
    assert choice.probe_ms == 187.0 and 45 <= choice.psnr_db < 60  # checked again, this start
    assert reference.calls == len(STYLES) and bf16.calls == len(STYLES)  # the PSNR check only
    assert "(auto, kept)" in choice.line()


def test_a_kept_choice_that_fails_its_check_is_timed_again(caplog):
    reference = Counting(ONNXRUNTIME, FP32, 0.0)
    stubs = {BF16: Counting(OPENVINO, BF16, 0.0, noise=30)}  # 24.6 dB
    kept = BackendChoice(OPENVINO, BF16, 187.0, 48.6, "auto")
    with caplog.at_level(logging.WARNING, "darkroom.engine"):
        runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, precisions=[BF16], kept=kept)
    assert runner is reference and not choice.kept and stubs[BF16].closed
    assert reference.calls > len(STYLES)  # timed
    [line] = [r.getMessage() for r in caplog.records]
    assert "24.6 dB < 45 dB" in line and "timing the backends again" in line


def test_a_kept_choice_the_operator_does_not_allow_is_not_used():
    reference = Counting(ONNXRUNTIME, FP32, 0.0)
    stubs = {FP32: Counting(OPENVINO, FP32, 0.0)}
    kept = BackendChoice(OPENVINO, BF16, 187.0, 48.6, "auto")
    runner, choice = choose_runner(reference, stub_openvino(stubs), IMAGE, STYLES, BackendPreference(OPENVINO, FP32), [FP32, BF16], kept=kept)
    assert runner is stubs[FP32] and not choice.kept


# -- the record, with the real network (timed on the small probe to keep the test short) -------


@pytest.fixture
def quick_timing(monkeypatch):
    """Count the timed runs, and time on the probe itself instead of 960x1280."""
    timed = []
    real = backends._seconds

    def counted(*args):
        timed.append(1)
        return real(*args)

    monkeypatch.setattr(backends, "_seconds", counted)
    monkeypatch.setattr(networks, "timing_portrait", probe_portrait)
    return timed


@pytest.fixture(scope="module")
def model():
    return load_catalogue().model("multistyle26")


def start(model, path) -> MultiStyleNetwork:
    net = MultiStyleNetwork(model, SessionPool(2), probe_styles=STYLES, kept=KeptChoice(path))
    net.warm_up()
    return net


def test_the_second_start_reuses_the_measured_choice(model, tmp_path, quick_timing):
    path = tmp_path / KEPT_CHOICE_FILE
    first = start(model, path)
    assert not first.choice.kept and quick_timing  # measured
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = json.loads(path.read_bytes())
    assert set(record) == {"version", "key", "choice", "measured_at"}
    assert record["choice"]["backend"] == first.choice.backend and record["choice"]["precision"] == first.choice.precision
    assert set(record["key"]) == {f.name for f in fields(ChoiceKey)} and all(record["key"].values())
    written = path.read_bytes()

    quick_timing.clear()
    second = start(model, path)
    assert second.choice.kept and not quick_timing  # nothing timed
    assert (second.choice.backend, second.choice.precision) == (first.choice.backend, first.choice.precision)
    assert second.choice.psnr_db >= backends.MIN_PSNR_DB
    assert path.read_bytes() == written  # a reuse does not rewrite the record
    out = second.run(probe_portrait(), STYLES[0])
    assert out.shape == probe_portrait().shape and out.std() > 5


@pytest.mark.parametrize("part", [f.name for f in fields(ChoiceKey)])
def test_a_change_of_any_key_part_times_again(model, tmp_path, quick_timing, part):
    """Simulated by an earlier record measured under another CPU, another library version,
    another model hash, ...: the key this start computes differs in that one part."""
    path = tmp_path / KEPT_CHOICE_FILE
    start(model, path)
    record = json.loads(path.read_bytes())
    record["key"][part] = "measured elsewhere"
    path.write_text(json.dumps(record))
    quick_timing.clear()
    net = start(model, path)
    assert not net.choice.kept and quick_timing
    assert json.loads(path.read_bytes())["key"][part] != "measured elsewhere"  # measured anew, kept


def test_a_new_library_version_times_again(model, tmp_path, quick_timing, monkeypatch):
    path = tmp_path / KEPT_CHOICE_FILE
    start(model, path)
    real = backends._version
    monkeypatch.setattr(backends, "_version", lambda name: "99.0" if name == "onnxruntime" else real(name))
    quick_timing.clear()
    assert not start(model, path).choice.kept and quick_timing


@pytest.mark.parametrize("damage", ["not json", "truncated", "wrong shape", "unreadable"])
def test_a_corrupt_or_unreadable_record_is_ignored_with_one_log_line(model, tmp_path, quick_timing, captured_logs, damage):
    path = tmp_path / KEPT_CHOICE_FILE
    start(model, path)
    good = path.read_bytes()
    if damage == "not json":
        path.write_bytes(b"\x00\xff garbage")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "wrong shape":
        path.write_text(json.dumps({"version": 1, "key": [1, 2], "choice": "fast"}))
    else:  # everyone here is root, so a mode cannot make it unreadable: a directory in its place
        path.unlink()
        path.mkdir()
    stream, _ = captured_logs
    quick_timing.clear()
    net = start(model, path)
    assert not net.choice.kept and quick_timing
    lines = [line for line in stream.getvalue().splitlines() if "kept backend choice" in line]
    assert len(lines) == 1 and "Traceback" not in stream.getvalue()
    if damage != "unreadable":
        assert json.loads(path.read_bytes())["version"] == 1  # replaced by a good record


def test_without_a_data_directory_nothing_is_kept(model, tmp_path, quick_timing):
    path = tmp_path / "missing" / KEPT_CHOICE_FILE
    start(model, path)
    assert not path.parent.exists()


def test_the_bot_keeps_it_in_its_data_directory(tmp_path):
    from bot.engine_config import engine_config
    from bot.settings import Settings

    config = engine_config(Settings(data_dir=tmp_path))
    assert config.choice_file == tmp_path / KEPT_CHOICE_FILE


def test_the_audit_accepts_the_record_and_nothing_else_under_its_name(model, tmp_path, quick_timing, capsys):
    from bot.storage.audit import audit

    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    start(model, data / KEPT_CHOICE_FILE)
    assert audit(data) == 0, capsys.readouterr().out
    capsys.readouterr()
    np.save(open(data / KEPT_CHOICE_FILE, "wb"), np.zeros(4))
    assert audit(data) != 0
    assert "is not a Darkroom backend choice" in capsys.readouterr().out
