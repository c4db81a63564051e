"""Proofs at the operating-system level, through the real `darkroom run` and `darkroom stylize`
processes (tests/os_level.py has the machinery, tests/proofs/os_scenarios.py the scenarios).

- Network: in a network namespace with only loopback, under strace, the process makes no name
  lookup at all (no packet to port 53, no nscd or systemd-resolved, not even a read of
  /etc/resolv.conf) and connects to nothing but the configured platform API.
- Files: under the same trace, the only files it creates or writes anywhere on the machine are
  the database (with its -wal/-shm/-journal) and the key file (and, for `stylize`, the outputs it
  was asked for); listings of HOME, TMPDIR, the working and the data directory agree.
- Core dumps: with `ulimit -c unlimited` and a core_pattern that writes a file, SIGQUIT or SIGABRT
  in the middle of styling leaves no core file.

Each proof is also run against a deliberately broken Darkroom and must catch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOKEN
from tests.fakes.telegram_api import User
from tests.os_level import (
    CORE_PATTERN,
    core_directory,
    core_pattern,
    dns_lookups,
    listing,
    listing_changes,
    missing_requirements,
    parse_strace,
    unexpected_contacts,
    unexpected_writes,
)
from tests.privacy_scan import make_canary

ROOT = Path(__file__).resolve().parents[2]
REASON = missing_requirements()
pytestmark = [pytest.mark.os_level, pytest.mark.skipif(REASON is not None, reason=f"OS-level proofs: {REASON}")]

# onnxruntime's telemetry starts about 9 s after it is imported: the main scenario keeps the bot
# running long enough that it would be seen (the "telemetry" break shows that it is).
HOLD_SECONDS = 18.0


def run_scenario(out: Path, scenario: str, broken: str | None = None, hold: float = 0.0):
    """Run a scenario in its own network namespace; return (result, parsed trace)."""
    argv = [sys.executable, "-m", "tests.proofs.os_scenarios", scenario, str(out), "--hold", str(hold)]
    if broken:
        argv += ["--break", broken]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the scenario, strace and the bot together
        output, _ = process.communicate()
        raise AssertionError(f"{scenario} timed out:\n{output.decode(errors='replace')[-3000:]}")
    assert process.returncode == 0, f"{scenario} failed:\n{output.decode(errors='replace')[-4000:]}"
    result = json.loads((out / "result.json").read_text())
    trace = parse_strace(Path(result["trace"]).read_text(errors="replace"), Path(result["cwd"]))
    return result, trace


def allowed_files(result: dict) -> set[Path]:
    """What Darkroom may write: the data directory, its database and keys, the kept backend
    choice (written under a temporary name first); `stylize`'s outputs."""
    from inference.backends import KEPT_CHOICE_FILE, KeptChoice

    data = Path(result["data"])
    files = {data, data / "secret.key", data / "c2pa-chain.pem", data / "c2pa-key.pem"}
    files |= {data / f"darkroom.sqlite3{s}" for s in ("", "-wal", "-shm", "-journal")}
    files |= {data / KEPT_CHOICE_FILE, KeptChoice(data / KEPT_CHOICE_FILE).temporary}
    return files | {Path(p) for p in result.get("outputs", [])}


SCENARIOS = ["telegram-polling", "telegram-webhook", "wechat-plain", "wechat-safe", "stylize"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_network_but_the_api_and_no_file_but_the_database(scenario, tmp_path):
    result, trace = run_scenario(tmp_path, scenario, hold=HOLD_SECONDS if scenario == "telegram-polling" else 0.0)
    assert result["returncode"] == 0, result["stderr"][-3000:]
    assert result["delivered"] == 1, "the photo was not styled and delivered"
    if scenario == "telegram-webhook":  # this one goes through the preview sheet (os_scenarios.telegram)
        assert result["sheets"] == 1, "the preview sheet was not in the flow"
    assert trace.lines > 100, "the trace is empty: strace did not follow the process"

    # Network: no name lookup of any kind, no contact but the configured API (and that one, so
    # the check is not vacuous).
    assert dns_lookups(trace) == []
    allowed = {tuple(e) for e in result["endpoints"]}
    assert unexpected_contacts(trace, allowed) == []
    contacted = {(c.endpoint.address, c.endpoint.port) for c in trace.contacts if c.endpoint.family.startswith("AF_INET")}
    assert contacted == allowed

    # Files: nothing written anywhere but the database and the key (the trace saw those, so it
    # does see writes), and the directory listings say the same.
    files = allowed_files(result)
    assert unexpected_writes(trace, files) == []
    written = {w.path for w in trace.writes}
    if scenario == "stylize":
        assert set(result["outputs"]) <= written
    else:
        # (the key and the signing identity were made before the start, as an operator does)
        assert {result["data"] + "/darkroom.sqlite3"} <= written
    changed = listing_changes(result["before"], result["after"])
    assert set(changed) <= {str(p) for p in files}, changed
    assert result["canary_at_rest"] == []
    # Signing was on: what was delivered carries Content Credentials, trusted with the operator's root.
    assert result["signed"] == ["Trusted"]
    if scenario == "telegram-polling":
        assert result["lifetime"] >= HOLD_SECONDS


def test_the_network_and_files_proofs_catch_onnxruntime_telemetry(tmp_path):
    """onnxruntime imported before Darkroom could switch its telemetry off: the DNS lookups
    and the files under ~/.cache and $TMPDIR are all caught."""
    result, trace = run_scenario(tmp_path, "telegram-polling", broken="telemetry", hold=HOLD_SECONDS + 10)
    lookups = dns_lookups(trace)
    assert any(":53 " in line or "nscd" in line or "resolve" in line for line in lookups), lookups  # a query went out
    assert any("nsswitch.conf" in line or "resolv.conf" in line for line in lookups), lookups
    assert unexpected_contacts(trace, {tuple(e) for e in result["endpoints"]}) != []
    bad = unexpected_writes(trace, allowed_files(result))
    home, tmp = result["home"], result["tmp"]
    assert any(f"{home}/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db " in line for line in bad), bad
    assert any(f"{tmp}/.ses " in line for line in bad), bad
    changed = listing_changes(result["before"], result["after"])
    assert f"{home}/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid" in changed


def test_the_files_proof_catches_a_photo_written_to_a_temporary_file(tmp_path):
    result, trace = run_scenario(tmp_path, "stylize", broken="tempfile")
    assert result["delivered"] == 1
    bad = unexpected_writes(trace, allowed_files(result))
    assert any(line.startswith(f"openat {result['tmp']}/tmp") and ".jpg" in line for line in bad), bad
    changed = listing_changes(result["before"], result["after"])
    assert any(path.startswith(result["tmp"] + "/") for path in changed), changed
    assert result["canary_at_rest"], "the photo in $TMPDIR was not found by the scan"


def test_the_network_proof_catches_a_connection_to_another_loopback_port(tmp_path):
    result, trace = run_scenario(tmp_path, "telegram-webhook", broken="connect")
    assert result["delivered"] == 1
    assert dns_lookups(trace) == []
    assert unexpected_contacts(trace, {tuple(e) for e in result["endpoints"]}) == [
        next(f"connect to 127.0.0.1:9 (pid {c.pid})" for c in trace.contacts if c.endpoint.port == 9)
    ]


# -- core dumps ------------------------------------------------------------------------------------

YUKI = User(555000222, "Yukiko", "yuki_no_hana", "en")
CRASHES = [
    pytest.param("run", signal.SIGQUIT, id="run-SIGQUIT"),
    pytest.param("stylize", signal.SIGABRT, id="stylize-SIGABRT"),
]


@contextlib.contextmanager
def observable_cores(workdir: Path):
    """The directory where a crashing process in ``workdir`` would leave its core file. A
    core_pattern that pipes to a collector cannot be watched: it is pointed at a temporary
    directory for the test and always restored."""
    pattern = core_pattern()
    directory = core_directory(pattern, workdir)
    if directory is not None:
        yield directory
        return
    target = workdir.parent / "cores"
    target.mkdir()
    try:
        CORE_PATTERN.write_text(str(target / "core.%p"))
    except OSError as exc:
        pytest.skip(f"core_pattern is {pattern!r} (a pipe) and cannot be changed here: {exc}")
    try:
        yield target
    finally:
        CORE_PATTERN.write_text(pattern)


def allow_cores() -> None:
    """In the child before exec: as `ulimit -c unlimited` (root may raise the hard limit), and the
    crash signals at their default action: a shell running the tests in the background without
    job control passes SIGQUIT on ignored, and the bot would then outlive the "crash"."""
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    for crash in (signal.SIGQUIT, signal.SIGABRT):
        signal.signal(crash, signal.SIG_DFL)


def darkroom(broken: str | None) -> list[str]:
    from tests.proofs.os_scenarios import darkroom_command

    return darkroom_command(broken)


def core_size_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4]
    raise AssertionError("no core limit in /proc/PID/limits")


def big_canary():
    import numpy as np
    from PIL import Image

    from tests.conftest import portrait_path

    return make_canary(np.asarray(Image.open(portrait_path("grace")).convert("RGB")), side=1280)


def collect_cores(directory: Path, before: dict, canary) -> tuple[list[Path], bytes]:
    """New core files in ``directory`` (removed at once: they hold the photo), and the canary's
    marker if a core held it."""
    found = [Path(p) for p in listing_changes(before, listing([directory])) if Path(p).name.startswith("core")]
    marker = b""
    for core in found:
        if canary.marker in core.read_bytes():
            marker = canary.marker
        core.unlink()
    return found, marker


async def crash_the_bot_while_styling(fake, tmp_path: Path, broken: str | None, sig: int) -> tuple[list[Path], str, bytes]:
    work, data = tmp_path / "work", tmp_path / "data"
    work.mkdir()
    canary = big_canary()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=fake.url, DARKROOM_DATA_DIR=str(data))
    with observable_cores(work) as cores:
        before = listing([cores])
        process = await asyncio.create_subprocess_exec(
            *darkroom(broken), "run", cwd=work, env=env, preexec_fn=allow_cores,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            await fake.wait_for("deleteWebhook", timeout=90)
            await fake.consent(YUKI)
            fake.delays["editMessageText"] = 0.5  # keep the photo in memory a little longer
            await fake.send_photo_from(YUKI, canary.jpeg, caption="oil")
            for _ in range(300):
                if fake.file_downloads:
                    break
                await asyncio.sleep(0.01)
            assert fake.file_downloads, "the photo was not downloaded"
            await asyncio.sleep(0.1)
            limit = core_size_limit(process.pid)
            process.send_signal(sig)
            code = await asyncio.wait_for(process.wait(), timeout=60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        stderr = (await process.stderr.read()).decode(errors="replace")
        assert code == -sig, f"darkroom ended with {code}, not by the signal: {stderr[-2000:]}"
        found, marker = collect_cores(cores, before, canary)
    return found, limit, marker


async def crash_stylize(tmp_path: Path, broken: str | None, sig: int) -> tuple[list[Path], str, bytes]:
    work = tmp_path / "work"
    work.mkdir()
    canary = big_canary()
    inputs = []
    for i in range(8):
        path = tmp_path / f"photo{i}.jpg"
        path.write_bytes(canary.jpeg)
        inputs.append(str(path))
    with observable_cores(work) as cores:
        before = listing([cores])
        process = await asyncio.create_subprocess_exec(
            *darkroom(broken), "stylize", *inputs, "-o", "out", "--style", "oil",
            cwd=work, preexec_fn=allow_cores, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        try:
            for _ in range(1200):  # the first photo is done: the next one is being styled
                if (work / "out" / "photo0-oil.jpg").exists() or process.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            assert (work / "out" / "photo0-oil.jpg").exists(), "stylize did not get going"
            limit = core_size_limit(process.pid)
            process.send_signal(sig)
            code = await asyncio.wait_for(process.wait(), timeout=60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        stderr = (await process.stderr.read()).decode(errors="replace")
        assert code == -sig, f"stylize ended with {code}, not by the signal (too late?): {stderr[-2000:]}"
        found, marker = collect_cores(cores, before, canary)
    return found, limit, marker


@pytest.mark.parametrize("command, sig", CRASHES)
async def test_a_crash_in_the_middle_of_styling_leaves_no_core_dump(command, sig, fake_telegram, tmp_path):
    if command == "run":
        cores, limit, _ = await crash_the_bot_while_styling(fake_telegram, tmp_path, broken=None, sig=sig)
    else:
        cores, limit, _ = await crash_stylize(tmp_path, broken=None, sig=sig)
    assert cores == [], f"darkroom {command} left a core file"
    assert limit == "0", f"darkroom {command} runs with a core size limit of {limit}"


@pytest.mark.parametrize("command, sig", CRASHES)
async def test_the_core_dump_proof_catches_hardening_removed(command, sig, fake_telegram, tmp_path):
    """The same crash with `harden_process` replaced by a no-op: a core file appears, and the
    photo's marker is in it. (The core is deleted at once.)"""
    if command == "run":
        cores, limit, marker = await crash_the_bot_while_styling(fake_telegram, tmp_path, broken="core", sig=sig)
    else:
        cores, limit, marker = await crash_stylize(tmp_path, broken="core", sig=sig)
    assert limit == "unlimited"
    assert len(cores) == 1, "no core file although core dumps were on: the proof cannot see one"
    assert marker, "the core file did not hold the photo"


@pytest.mark.parametrize("half, limit", [("core-prctl-only", "unlimited"), ("core-rlimit-only", "0")])
async def test_either_half_of_the_hardening_alone_stops_the_core_file(half, limit, tmp_path):
    """PR_SET_DUMPABLE alone (the core size limit left unlimited) and RLIMIT_CORE alone each stop
    the dump. Only the first also stops a dump piped to a collector (systemd-coredump, apport),
    which the kernel does not limit by RLIMIT_CORE."""
    cores, seen_limit, _ = await crash_stylize(tmp_path, broken=half, sig=signal.SIGABRT)
    assert seen_limit == limit
    assert cores == []
