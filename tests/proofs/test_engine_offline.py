"""Proof 6 for the runtimes themselves: importing onnxruntime and OpenVINO, compiling the graph on
OpenVINO and styling a photo makes no name lookup, opens no internet socket and writes nothing
under $HOME (OpenVINO's telemetry lives in its converter tools, which Darkroom never imports;
onnxruntime's is off, see inference/models.py).

The Python-level network guard cannot see native code, so this runs a child process in its own
network namespace (`unshare -n`: loopback only) under strace, and reads every connect, send,
file open and directory change it made. A canary child that does look a name up and write to
$HOME shows the check catches both.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not (shutil.which("strace") and shutil.which("unshare")) or os.geteuid() != 0 and not Path("/proc/self/ns/user").exists(),
    reason="needs strace and unshare",
)

STYLE_A_PHOTO = """
import io, sys
import numpy as np
from PIL import Image
from inference import Engine, EngineConfig, StyleRequest
engine = Engine(EngineConfig(backend="openvino"))
engine.verify()
assert engine.choice.backend == "openvino", engine.choice.line()
rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
out = io.BytesIO(); Image.fromarray(rgb).save(out, "JPEG")
engine.stylize(out.getvalue(), StyleRequest("ink"))
print(engine.choice.line())
"""

CANARY = """
import os, socket
try:
    socket.getaddrinfo("telemetry.example.com", 443)
except OSError:
    pass
open(os.path.join(os.environ["HOME"], "consent.txt"), "w").write("1")
"""

TRACED = "connect,sendto,sendmsg,open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat"


def traced_run(code: str, home: Path, log: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DARKROOM_", "TELEGRAM_", "WECHAT_"))}
    env["HOME"] = str(home)
    command = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    command += ["strace", "-f", "--seccomp-bpf", "-qq", "-e", f"trace={TRACED}", "-o", str(log), sys.executable, "-c", code]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])


def findings(log: Path, home: Path) -> list[str]:
    """Every traced call that looked a name up, used an internet socket, or wrote under $HOME."""
    found = []
    for line in log.read_text().splitlines():
        if re.search(r"connect\(\d+, \{sa_family=AF_INET6?", line) or re.search(r"send(to|msg)\(\d+, .*AF_INET", line):
            found.append(line)
        elif re.search(r'"/etc/(resolv\.conf|hosts|nsswitch\.conf|gai\.conf)"', line):
            found.append(line)  # the resolver reading its configuration: a name lookup
        elif str(home) in line and re.search(r"O_WRONLY|O_RDWR|O_CREAT|mkdir|rename|unlink|creat\(", line):
            found.append(line)
    return found


def test_runtimes_compile_and_style_without_network_or_home_writes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "trace.log"
    result = traced_run(STYLE_A_PHOTO, home, log)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "openvino" in result.stdout
    assert findings(log, home) == []
    assert list(home.iterdir()) == []


def test_the_trace_check_catches_a_name_lookup_and_a_home_write(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "trace.log"
    result = traced_run(CANARY, home, log)
    assert result.returncode == 0, result.stderr[-2000:]
    found = findings(log, home)
    assert any("resolv.conf" in line or "AF_INET" in line for line in found), found
    assert any("consent.txt" in line for line in found), found
