"""Running the built image with podman, the way these machines allow: runc (crun fails on their
hybrid cgroup layout) and explicit limits for open files and processes (runc refuses to start a
container without them here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "tests" / "deploy" / "build_image.sh"
IMAGE = os.environ.get("DARKROOM_TEST_IMAGE", "localhost/darkroom:test")
SERVICES_IMAGE = os.environ.get("DARKROOM_TEST_SERVICES_IMAGE", "localhost/darkroom-services:bookworm")
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]  # as in build_image.sh
# podman-compose comes with the test extras: beside this Python, on PATH or not (an unactivated venv).
COMPOSE = shutil.which("podman-compose", path=str(Path(sys.executable).parent)) or "podman-compose"
MISSING_TOOLS = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, check=check)


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def run(options: list[str], command: list[str], timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    """`podman run --rm [options] IMAGE [command]`: the image's `darkroom` with the machine's limits."""
    return podman("run", "--rm", *LIMITS, *options, IMAGE, *command, timeout=timeout, check=check)
