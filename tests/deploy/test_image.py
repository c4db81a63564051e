"""The built image (Dockerfile), started as a person would start it: offline styling with no
network at all, and `darkroom run` with no platform serving the on-device page, both on a
read-only root filesystem, as an unprivileged user, keeping data only on the /data volume."""

from __future__ import annotations

import io
import json
import secrets
import time

import pytest
from PIL import Image

from tests.conftest import SECRET, TOKEN, portrait_path
from tests.deploy.podman import SERVICES_IMAGE, podman, run

pytestmark = pytest.mark.container

# The image built on CI's stand-in Debian base (tests/deploy/build_image.sh) was 760 MB when this
# was written and 829 MB once C2PA signing (c2pa-python, 53 MB) joined the runtimes (README
# "Deploy" says what takes the space). The limit catches a build stage leaking into it (the
# wheelhouse alone is 224 MB) or OpenVINO's unused plugins coming back (80 MB).
MAX_IMAGE_BYTES = 870_000_000


def test_the_image_runs_darkroom_as_an_unprivileged_user_without_build_tools(image):
    inspected = json.loads(podman("image", "inspect", image).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "darkroom:darkroom"
    assert config["Entrypoint"] == ["darkroom"] and config["Cmd"] == ["run"]
    assert list(config["Volumes"]) == ["/data"]
    assert inspected["Healthcheck"]["Test"] == ["CMD", "python3", "/opt/darkroom/healthcheck.py"]

    probe = run(
        ["--network=none", "--read-only", "--entrypoint", "sh"],
        ["-c", "id -u; stat -c '%a %u' /data; for t in gcc cc make pip pip3; do command -v $t; done; "
               "python3 -c 'import pip' 2>/dev/null && echo pip-importable; true"],
    )
    uid, data, *found = probe.stdout.split("\n")
    assert uid == "10001"
    assert data == "700 10001"  # the one volume: private to the user Darkroom runs as
    assert [line for line in found if line] == []  # no compiler, no pip: nothing to build or install with

    size = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout)
    print(f"image size: {size} bytes")
    assert size < MAX_IMAGE_BYTES


def test_stylize_offline_on_a_read_only_root_with_no_network(image, tmp_path):
    io_dir = tmp_path / "io"
    io_dir.mkdir()
    io_dir.chmod(0o777)  # written by the image's user
    (io_dir / "portrait.jpg").write_bytes(portrait_path("grace").read_bytes())
    done = run(
        ["--network=none", "--read-only", "-v", f"{io_dir}:/io"],
        ["stylize", "/io/portrait.jpg", "-o", "/io/out", "--style", "ink"],
        timeout=600,
    )
    assert "1 face(s)" in done.stdout, done.stdout + done.stderr
    styled = Image.open(io.BytesIO((io_dir / "out" / "portrait-ink.jpg").read_bytes()))
    assert styled.format == "JPEG" and styled.size == (512, 600)


def test_run_with_no_platform_serves_the_page_and_reports_healthy(image):
    name = f"darkroom-test-{secrets.token_hex(4)}"
    volume = f"{name}-data"
    podman("volume", "create", volume)
    try:
        # As the README's one-box command, but with no network at all: nothing here needs one.
        podman("run", "-d", "--name", name, "--network=none", "--read-only", "--cap-drop=ALL",
               "--security-opt=no-new-privileges", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
               "--ulimit", "core=0", "-v", f"{volume}:/data", image)
        deadline = time.monotonic() + 300
        while podman("healthcheck", "run", name, check=False).returncode != 0:  # the image's HEALTHCHECK
            state = json.loads(podman("inspect", name).stdout)[0]["State"]
            assert state["Running"], podman("logs", name, check=False).stderr[-3000:]
            assert time.monotonic() < deadline, podman("logs", name, check=False).stderr[-3000:]
            time.sleep(2)
        page = podman("exec", name, "python3", "-c",
                      "import urllib.request as u; r = u.urlopen('http://127.0.0.1:8080/app/', timeout=10); "
                      "print(r.status); print(r.read().decode()[:2000])").stdout
        assert page.startswith("200\n") and "<html" in page.lower()
        # What the volume holds, as `darkroom audit` sees it (and a person could check).
        audit = podman("exec", name, "darkroom", "audit", check=False)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        listing = podman("exec", name, "sh", "-c", "stat -c '%a %U %n' /data /data/*").stdout.split("\n")
        assert listing[0] == "700 darkroom /data"
        assert all(line.split()[1] == "darkroom" for line in listing if line)
    finally:
        podman("rm", "-f", "-v", "-t", "5", name, check=False)
        podman("volume", "rm", "-f", volume, check=False)


def test_a_worker_reports_healthy_on_its_own_health_port(image):
    """compose.yaml's worker check (`healthcheck.py worker`), in a network of two containers and
    nothing else: Redis (the stand-in image) with no network, the worker inside Redis's."""
    name = f"darkroom-test-{secrets.token_hex(4)}"
    limits = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]
    try:
        podman("run", "-d", "--name", f"{name}-redis", "--network=none", *limits, "--user", "redis",
               SERVICES_IMAGE, "redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
        podman("run", "-d", "--name", name, f"--network=container:{name}-redis", "--read-only", "--cap-drop=ALL",
               *limits, "-e", f"TELEGRAM_BOT_TOKEN={TOKEN}", "-e", f"DARKROOM_SECRET={SECRET}",
               "-e", "DARKROOM_BROKER_URL=redis://127.0.0.1:6379/0", "-e", "DARKROOM_INPUT_TTL=0",
               "-e", "DARKROOM_WORKER_METRICS_PORT=9100", "-e", "DARKROOM_ENGINE=onnxruntime", "-e", "DARKROOM_PRECISION=fp32",
               "-e", "DARKROOM_THREADS=1", "--health-cmd", '["python3", "/opt/darkroom/healthcheck.py", "worker"]', image, "worker")
        deadline = time.monotonic() + 300
        while podman("healthcheck", "run", name, check=False).returncode != 0:
            state = json.loads(podman("inspect", name).stdout)[0]["State"]
            assert state["Running"], podman("logs", name, check=False).stderr[-3000:]
            assert time.monotonic() < deadline, podman("logs", name, check=False).stderr[-3000:]
            time.sleep(2)
        assert "worker ready: taking jobs" in podman("logs", name).stderr
    finally:
        podman("rm", "-f", "-v", "-t", "5", name, check=False)  # first: it lives in Redis's network namespace
        podman("rm", "-f", "-v", "-t", "5", f"{name}-redis", check=False)
