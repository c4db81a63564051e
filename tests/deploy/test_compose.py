"""compose.yaml's scaled form, brought up with podman-compose from the built image: a front, two
workers, Redis and PostgreSQL, against the fake Bot API on this machine. Ten people send a photo,
one worker container is killed while it styles, and everyone is answered exactly once: a styled
photo, or (for a job that died with its worker) the request to send it again, never both, never
twice, never nothing.

What this machine changes, and nothing else, is in tests/deploy/compose.host.yaml. Two parts of
Compose the test plays itself, because podman 4.3 lacks them: there is no systemd here to time
health checks, so the test runs each container's own check (`podman healthcheck run`), and
podman 4.3 cannot wait for `service_healthy`, so the test starts the services in the order the
`depends_on` conditions give, each once the ones it depends on pass their health check.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import SECRET, TOKEN
from tests.deploy.podman import COMPOSE, PODMAN, REPO, SERVICES_IMAGE, podman
from tests.e2e.test_workers import free_port
from tests.fakes.telegram_api import User

pytestmark = pytest.mark.container

PEOPLE = [User(880000000 + i, f"Person{i}", f"person_{i}_handle", "en") for i in range(10)]
SEND_AGAIN = "send it again"


class Stack:
    """One compose project in its own directory (compose.yaml, the test's override, a .env)."""

    def __init__(self, directory: Path, image: str, api_url: str) -> None:
        self.dir = directory
        self.name = f"darkroomtest{secrets.token_hex(3)}"
        directory.mkdir()
        shutil.copy(REPO / "compose.yaml", directory / "compose.yaml")
        shutil.copy(REPO / "tests" / "deploy" / "compose.host.yaml", directory / "compose.host.yaml")
        self.http_port, redis_port, postgres_port = free_port(), free_port(), free_port()
        password = secrets.token_hex(12)
        settings = {
            # Darkroom's own settings, as a person would put them in .env
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": api_url,
            "DARKROOM_SECRET": SECRET,
            "DARKROOM_HTTP_HOST": "127.0.0.1",
            "DARKROOM_HTTP_PORT": str(self.http_port),
            "DARKROOM_THREADS": "1",
            "DARKROOM_ENGINE": "onnxruntime",  # no start-up timing of the backends: quicker workers
            "DARKROOM_PRECISION": "fp32",
            "DARKROOM_JOB_TIMEOUT": "30",
            "DARKROOM_LOG_LEVEL": "DEBUG",  # the workers say when a job starts; still no one named
            # compose.yaml's own variables
            "DARKROOM_IMAGE": image,
            "DARKROOM_POSTGRES_PASSWORD": password,
            # this machine's (compose.host.yaml): everything on loopback
            "DARKROOM_TEST_SERVICES_IMAGE": SERVICES_IMAGE,
            "DARKROOM_COMPOSE_REDIS_PORT": str(redis_port),
            "DARKROOM_COMPOSE_POSTGRES_PORT": str(postgres_port),
            "DARKROOM_COMPOSE_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "DARKROOM_COMPOSE_DATABASE_URL": f"postgresql://darkroom:{password}@127.0.0.1:{postgres_port}/darkroom",
            "DARKROOM_COMPOSE_WORKER_HEALTH_PORT": "0",
        }
        (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    async def compose(self, *args: str, timeout: float = 300) -> str:
        command = [
            COMPOSE, "--podman-args=--runtime runc", "--in-pod=false", "-p", self.name,
            "-f", "compose.yaml", "-f", "compose.host.yaml", "--profile", "scaled", *args,
        ]
        done = await asyncio.to_thread(subprocess.run, command, cwd=self.dir, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done.stdout

    async def containers(self, service: str) -> list[str]:
        listed = await asyncio.to_thread(
            podman, "ps", "-a", "--filter", f"label=io.podman.compose.project={self.name}",
            "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}",
        )
        return sorted(listed.stdout.split())

    async def logs(self, container: str) -> str:
        done = await asyncio.to_thread(podman, "logs", container, check=False)
        return done.stdout + done.stderr

    async def wait_healthy(self, service: str, timeout: float = 300) -> None:
        """Run the service's own health check (compose.yaml's) until it passes."""
        deadline = time.monotonic() + timeout
        for container in await self.containers(service):
            while (await asyncio.to_thread(podman, "healthcheck", "run", container, check=False)).returncode != 0:
                state = json.loads((await asyncio.to_thread(podman, "inspect", container)).stdout)[0]["State"]
                assert state["Running"] or state["Restarting"], (await self.logs(container))[-3000:]
                assert time.monotonic() < deadline, f"{service} never healthy:\n{(await self.logs(container))[-3000:]}"
                await asyncio.sleep(2)

    async def wait_for_log(self, container: str, line: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while line not in await self.logs(container):
            assert time.monotonic() < deadline, f"{container}: no {line!r}:\n{(await self.logs(container))[-3000:]}"
            await asyncio.sleep(2)

    def down(self) -> None:
        # The image's VOLUME gives each worker an anonymous /data volume, which podman-compose's
        # `down -v` leaves behind: note them first, remove them last.
        ids = subprocess.run(
            [*PODMAN, "ps", "-aq", "--filter", f"label=io.podman.compose.project={self.name}"], capture_output=True, text=True,
        ).stdout.split()
        mounted = subprocess.run(
            [*PODMAN, "inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", *ids], capture_output=True, text=True,
        ).stdout if ids else ""
        subprocess.run(
            [COMPOSE, "--podman-args=--runtime runc", "--in-pod=false", "-p", self.name,
             "-f", "compose.yaml", "-f", "compose.host.yaml", "--profile", "scaled", "down", "-v", "-t", "5"],
            cwd=self.dir, capture_output=True, timeout=300,
        )
        # Anything left of the project (the down above is best-effort).
        leftovers = subprocess.run(
            [*PODMAN, "ps", "-aq", "--filter", f"label=io.podman.compose.project={self.name}"], capture_output=True, text=True,
        ).stdout.split()
        if leftovers:
            subprocess.run([*PODMAN, "rm", "-f", "-v", "-t", "0", *leftovers], capture_output=True)
        volumes = set(re.findall(r"[0-9a-f]{64}", mounted))
        if volumes:
            subprocess.run([*PODMAN, "volume", "rm", "-f", *volumes], capture_output=True)


@pytest.fixture
async def stack(image, fake_telegram, tmp_path):
    running = Stack(tmp_path / "stack", image, fake_telegram.url)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.down)


def answers(fake, person: User) -> list[str]:
    photos = ["photo" for _ in fake.calls_to("sendPhoto", person.id)]
    again = ["send again" for c in fake.calls_to("editMessageText", person.id) if SEND_AGAIN in str(c.params.get("text", ""))]
    return photos + again


async def test_scaled_stack_answers_everyone_exactly_once_when_a_worker_container_is_killed(stack, fake_telegram, small_portrait):
    fake = fake_telegram
    # depends_on, in order: Redis and PostgreSQL healthy -> the front -> the workers.
    await stack.compose("up", "-d", "--no-deps", "redis", "postgres")
    await stack.wait_healthy("redis")
    await stack.wait_healthy("postgres")
    await stack.compose("up", "-d", "--no-deps", "front")
    await fake.wait_for("deleteWebhook", timeout=120)  # it polls the (fake) Bot API
    await stack.compose("up", "-d", "--no-deps", "--scale", "worker=2", "worker")
    workers = await stack.containers("worker")
    assert len(workers) == 2, workers
    for worker in workers:
        await stack.wait_for_log(worker, "worker ready: taking jobs")
    # GET /readyz on the front's port, from inside it: healthy once a worker's heartbeat says it
    # has a free styling process (before that it answers 503 no_worker).
    await stack.wait_healthy("front")

    for person in PEOPLE:
        await fake.consent_with_style(person)
    fake.delays["file"] = 2.0  # each job stays on its worker a while: one is still running when killed
    for person in PEOPLE:
        await fake.send_photo_from(person, small_portrait)
    await fake.wait_for_arrival("getFile", timeout=120)

    deadline = time.monotonic() + 120
    while not (busy := [w for w in workers if "job started" in await stack.logs(w)]):
        assert time.monotonic() < deadline, "no worker took a job"
        await asyncio.sleep(0.5)
    await asyncio.to_thread(podman, "kill", "--signal", "KILL", busy[0])  # the whole container, no goodbye

    deadline = time.monotonic() + 240
    while not all(answers(fake, person) for person in PEOPLE):
        waiting = [p.first_name for p in PEOPLE if not answers(fake, p)]
        assert time.monotonic() < deadline, f"not answered: {waiting}"
        await asyncio.sleep(1.0)
    await asyncio.sleep(10.0)  # a second answer (a late delivery, a duplicate) would come now
    assert {p.first_name: answers(fake, p) for p in PEOPLE if len(answers(fake, p)) != 1} == {}
    assert sum(answers(fake, p) == ["photo"] for p in PEOPLE) >= len(PEOPLE) - 2  # only the killed worker's jobs are lost
    logs = [await stack.logs(c) for c in [*await stack.containers("front"), *workers]]
    for person in PEOPLE:  # nobody named in the operator's logs, even at DEBUG
        assert not [log for log in logs if str(person.id) in log or person.username in log or person.first_name in log]


def test_one_box_from_env_example_serves_the_page_and_is_healthy(image, tmp_path):
    """`cp .env.example .env && docker compose up -d`, as the README says: .env.example is written
    for a checkout (./data, 127.0.0.1, no metrics), and compose.yaml must still put the data on the
    volume and the server where the health check and the published port find it. No network
    here (and no platform in .env.example: the on-device page alone)."""
    shutil.copy(REPO / "compose.yaml", tmp_path / "compose.yaml")
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    (tmp_path / "compose.none.yaml").write_text(
        "services:\n  darkroom:\n    network_mode: none\n    ports: !reset []\n"
        "    ulimits: {nofile: 4096, nproc: 4096}\n"
    )
    project = f"darkroomtest{secrets.token_hex(3)}"
    command = [COMPOSE, "--podman-args=--runtime runc", "--in-pod=false", "-p", project,
               "-f", "compose.yaml", "-f", "compose.none.yaml"]
    environ = {**os.environ, "DARKROOM_IMAGE": image}
    try:
        up = subprocess.run([*command, "up", "-d", "darkroom"], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stderr[-3000:]
        container = f"{project}_darkroom_1"
        deadline = time.monotonic() + 300
        while podman("healthcheck", "run", container, check=False).returncode != 0:
            assert time.monotonic() < deadline, podman("logs", container, check=False).stderr[-3000:]
            time.sleep(2)
        page = podman("exec", container, "python3", "-c",
                      "import urllib.request as u; print(u.urlopen('http://127.0.0.1:8080/app/', timeout=10).status)").stdout
        assert page.strip() == "200"
        listening = podman("exec", container, "cat", "/proc/net/tcp").stdout
        assert " 00000000:1F90 00000000:0000 0A " in listening  # on 0.0.0.0:8080, where the published port leads
        files = podman("exec", container, "sh", "-c", "stat -c '%a %U %n' /data/*").stdout.split("\n")
        assert "darkroom /data/secret.key" in " ".join(files), files  # the key is on the volume
    finally:
        subprocess.run([*command, "down", "-v", "-t", "5"], cwd=tmp_path, env=environ, capture_output=True, timeout=300)
