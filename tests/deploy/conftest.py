"""Tests marked `container` run the built image with podman (tests/deploy/podman.py). Without
podman they are skipped, except in CI (CI=true), where they fail: a deployment that is never
started proves nothing. The image is built once per run when it is not there yet
(tests/deploy/build_image.sh; .ci/run builds it beforehand, as its own timed step)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.deploy.podman import BUILD, IMAGE, MISSING_TOOLS, SERVICES_IMAGE, image_exists


def pytest_runtest_setup(item) -> None:
    if item.get_closest_marker("container") is None or not MISSING_TOOLS:
        return
    reason = f"no {' and no '.join(MISSING_TOOLS)} (apt-get install podman runc mmdebstrap)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the container tests", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def image() -> str:
    """The image's name, built first if needed (a few minutes)."""
    if not (image_exists(IMAGE) and image_exists(SERVICES_IMAGE)):
        built = subprocess.run(["bash", str(BUILD)], capture_output=True, text=True, timeout=1800)
        assert built.returncode == 0, built.stderr[-4000:]
    return IMAGE
