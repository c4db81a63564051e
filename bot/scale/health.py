"""A worker's own HTTP endpoints, served by its main process (the one that stays while styling
processes come and go) on DARKROOM_WORKER_METRICS_HOST:DARKROOM_WORKER_METRICS_PORT:

* ``GET /healthz``: liveness; 200 whenever the process answers.
* ``GET /readyz``: 200 only when this worker can take a job: Redis (and a Redis broker) answer
  and at least one of its styling processes has loaded its engine and is free (its heartbeat);
  otherwise 503 with a short reason code.
* ``GET /metrics``: Prometheus, every styling process's counters summed (prometheus-client's
  multiprocess mode: each process writes its values to a private directory, so a replaced
  process's counts survive it).

Nothing here names a person: reasons are fixed codes, metric labels outcome kinds.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from redis import Redis

from bot.scale.keys import Keys
from bot.settings import Settings, StartupError

log = logging.getLogger("darkroom.workers")
ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_directory() -> str:
    """Where the styling processes write their metric values: a fresh private directory, set
    before prometheus-client is first imported (it decides its storage then)."""
    directory = tempfile.mkdtemp(prefix="darkroom-metrics-")  # 0700
    os.environ[ENV] = directory
    return directory


def remove_directory(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


class WorkerHealth:
    """The checks behind /readyz; ``node`` prefixes this worker's heartbeat names."""

    def __init__(self, settings: Settings, node: str) -> None:
        self.settings = settings
        self.node = node
        self.redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
        same = settings.broker_url == settings.redis_url
        redis_broker = settings.broker_url.startswith(("redis://", "rediss://"))
        self.broker = None if same or not redis_broker else Redis.from_url(settings.broker_url, socket_connect_timeout=2, socket_timeout=2)

    def ready(self) -> tuple[bool, str, dict]:
        try:
            self.redis.ping()
        except Exception:
            return False, "redis_unreachable", {}
        if self.broker is not None:
            try:
                self.broker.ping()
            except Exception:
                return False, "broker_unreachable", {}
        try:
            names = list(self.redis.scan_iter(match=Keys().worker(self.node + "*"), count=100))
            beats = self.redis.mget(names) if names else []
        except Exception:
            return False, "redis_unreachable", {}
        processes = sum(1 for b in beats if b is not None)
        free = sum(1 for b in beats if b == b"1")
        details = {"processes": processes, "free": free}
        if processes == 0:
            return False, "no_engine_loaded", details
        if free == 0:
            return False, "all_busy", details
        return True, "ok", details


def serve(settings: Settings, health: WorkerHealth) -> ThreadingHTTPServer:
    # Here, not at the top: multiprocess_directory() must run before prometheus-client loads.
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest  # noqa: PLC0415
    from prometheus_client.multiprocess import MultiProcessCollector  # noqa: PLC0415

    registry = CollectorRegistry()
    MultiProcessCollector(registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path == "/healthz":
                self._send(200, "application/json", json.dumps({"status": "ok"}).encode())
            elif self.path == "/readyz":
                ok, reason, details = health.ready()
                body = json.dumps({"status": "ok" if ok else "unavailable", "reason": reason, **details}).encode()
                self._send(200 if ok else 503, "application/json", body)
            elif self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # no access log: nothing to keep about callers
            pass

    try:
        server = ThreadingHTTPServer((settings.worker_metrics_host, settings.worker_metrics_port), Handler)
    except OSError as exc:
        raise StartupError(
            f"cannot listen on {settings.worker_metrics_host}:{settings.worker_metrics_port} ({exc.strerror or type(exc).__name__}); "
            "set DARKROOM_WORKER_METRICS_HOST / DARKROOM_WORKER_METRICS_PORT"
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="darkroom-worker-http", daemon=True).start()
    log.info("worker health and metrics on %s:%d (/healthz, /readyz, /metrics)", settings.worker_metrics_host, settings.worker_metrics_port)
    return server
