"""Process hardening, each check in a fresh interpreter (hardening cannot be undone in-process):
the photo commands switch core dumps off, the others do not; the engine switches onnxruntime's
telemetry off before it is imported, whatever the environment says. The OS-level proofs that
these measures work are in tests/proofs/test_os_level.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def python(code: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ORT_", "TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=120)


AFTER_MAIN = (
    "import sys\n"
    "from bot.cli import main\n"
    "from bot.safeguards.core_dumps import core_dumps_disabled\n"
    "print('before', core_dumps_disabled())\n"
    "code = main(sys.argv[1:])\n"
    "print('after', core_dumps_disabled(), code)\n"
)


@pytest.mark.parametrize(
    "argv, hardened",
    [
        (["run"], True),  # a bad setting (below) makes it return at once, hardened before that
        (["stylize", "missing.jpg", "-o", "out", "--style", "ink", "--strength", "2"], True),
        (["sheet", "missing.jpg", "-o", "sheet.jpg"], True),
        (["styles"], False),
        (["audit", "--data-dir", "nothing-here"], False),
    ],
)
def test_photo_commands_switch_core_dumps_off(argv, hardened, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", AFTER_MAIN, *argv], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))},
            "TELEGRAM_MODE": "carrier-pigeon",
        },
    )
    lines = done.stdout.splitlines()
    assert "before False" in lines, done.stdout + done.stderr
    assert any(line.startswith(f"after {hardened} ") for line in lines), done.stdout + done.stderr


def test_hardening_is_both_measures(tmp_path):
    done = python(
        "import resource, ctypes, ctypes.util\n"
        "from bot.safeguards.core_dumps import harden_process\n"
        "harden_process()\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
        "print(resource.getrlimit(resource.RLIMIT_CORE), libc.prctl(3, 0, 0, 0, 0))\n"
        "try:\n"
        "    resource.setrlimit(resource.RLIMIT_CORE, (1024, 1024))\n"
        "except (ValueError, OSError):\n"
        "    print('cannot raise')\n",
        tmp_path,
    )
    assert done.stdout.splitlines()[0] == "(0, 0) 0", done.stderr
    if os.geteuid() != 0:  # root keeps CAP_SYS_RESOURCE and could raise it again
        assert "cannot raise" in done.stdout


@pytest.mark.parametrize("given", [None, "0", "false"])
def test_the_engine_switches_onnxruntime_telemetry_off_whatever_the_environment_says(given, tmp_path):
    env = {} if given is None else {"ORT_DISABLE_TELEMETRY": given}
    done = python("import os, inference, onnxruntime\nprint(os.environ['ORT_DISABLE_TELEMETRY'])", tmp_path, **env)
    assert done.stdout.strip() == "1", done.stderr
    assert "RuntimeWarning" not in done.stderr


def test_onnxruntime_imported_first_is_reported(tmp_path):
    done = python("import onnxruntime, inference", tmp_path)
    assert "onnxruntime was imported before Darkroom's engine" in done.stderr
    assert "RuntimeWarning" in done.stderr
    quiet = python("import onnxruntime, inference", tmp_path, ORT_DISABLE_TELEMETRY="1")
    assert "RuntimeWarning" not in quiet.stderr
