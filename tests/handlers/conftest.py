"""The conversation tests run on both storage engines: SQLite, and PostgreSQL (marked `postgres`)."""

from __future__ import annotations

import pytest

from tests.conftest import ENGINES, storage_location


@pytest.fixture(params=ENGINES)
def harness_storage(request, tmp_path):
    return storage_location(request, tmp_path)
