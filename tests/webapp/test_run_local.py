"""`darkroom run` with no platform configured serves only the page: it checks the model files
but loads no styling runtime (onnxruntime, OpenVINO), prints the page's address quickly, and is
ready (GET /readyz, the image's health check) without one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.webapp.conftest import _free_port


def test_run_with_no_platform_loads_no_styling_runtime(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "WECHAT_", "DARKROOM_"))}
    env.update(DARKROOM_HTTP_PORT=str(_free_port()), DARKROOM_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    darkroom = shutil.which("darkroom", path=str(Path(sys.executable).parent)) or "darkroom"
    started = time.monotonic()
    process = subprocess.Popen([darkroom, "run"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        seconds = time.monotonic() - started
        assert line.startswith("Darkroom on-device page: http://127.0.0.1:"), line
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        load = os.getloadavg()[0]
        print(f"darkroom run, no platform: address after {seconds:.2f} s (load average {load:.1f})")
        assert "onnxruntime" not in maps and "openvino" not in maps
        # 3 s on a quiet machine (the brief's bound); a loaded CI machine gets some slack
        assert seconds <= 3 * max(1.0, load / (os.cpu_count() or 1))
        with urllib.request.urlopen(f"http://127.0.0.1:{env['DARKROOM_HTTP_PORT']}/readyz", timeout=10) as ready:
            assert ready.status == 200
    finally:
        process.terminate()
        process.wait(timeout=20)
