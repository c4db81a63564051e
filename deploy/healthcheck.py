"""The container health check (Dockerfile HEALTHCHECK, compose.yaml): exit 0 when this container's
Darkroom answers its health endpoint on 127.0.0.1, 1 otherwise. Standard library only: it runs
every 30 s and must not load the runtimes.

    python3 healthcheck.py          # the front (`darkroom run`): GET /readyz on DARKROOM_HTTP_PORT
    python3 healthcheck.py worker   # a worker: GET /healthz on DARKROOM_WORKER_METRICS_PORT

It reads the same variables the process was started with (the container's environment), because
it checks that process from inside the same container. A version of Darkroom without /readyz
(404) is checked on /healthz instead, and a worker without /healthz on /metrics: an image built
from an older checkout keeps a working health check.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT = 4.0  # under the HEALTHCHECK's --timeout


def answers(port: str, paths: tuple[str, ...]) -> bool:
    for path in paths:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=TIMEOUT) as response:
                return response.status == 200
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                return False  # e.g. 503 from /readyz: up, but not ready
        except OSError:
            return False
    return False


def main(argv: list[str]) -> int:
    if argv[1:2] == ["worker"]:
        port = os.environ.get("DARKROOM_WORKER_METRICS_PORT", "0")
        if port == "0":
            print("healthcheck: set DARKROOM_WORKER_METRICS_PORT so the worker can be checked", file=sys.stderr)
            return 1
        return 0 if answers(port, ("/healthz", "/metrics")) else 1
    return 0 if answers(os.environ.get("DARKROOM_HTTP_PORT", "8080"), ("/readyz", "/healthz")) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
