"""The `redis` marker's rule: without a test Redis the tests are skipped with a reason, but in CI
(CI=true) they fail, so a CI run cannot pass by silently skipping the shared-state proofs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ONE_REDIS_TEST = "tests/shared/test_token_store.py::test_the_token_is_sealed_in_redis_and_expires_before_wechats"


def run_without_redis(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("DARKROOM_TEST_REDIS_URL", "CI")}
    environment.update(env)
    return subprocess.run(
        # Only the marker plugin, not the suite's conftest (which loads the styling engine): quick.
        [sys.executable, "-m", "pytest", ONE_REDIS_TEST, "-q", "-p", "no:cacheprovider", "--noconftest", "-p", "tests.services.redis_plugin"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300,
    )


def test_skipped_with_a_reason_outside_ci():
    result = run_without_redis()
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout and "DARKROOM_TEST_REDIS_URL is not set" in result.stdout


def test_failed_in_ci():
    result = run_without_redis(CI="true")
    assert result.returncode != 0
    assert "CI must run the Redis tests" in result.stdout
