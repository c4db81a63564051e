"""Which tests are slow, and which must not share the machine: the one home of both facts.

`python -m pytest -m "not slow"` is the inner loop: handlers, router, jobs, storage on SQLite,
settings, CLI, audit and the engine's own tests: 55 s of CPU time (232 s at load 10-12 on the
shared 2-core machine, where the whole suite took 709 s of CPU and 54 minutes). Everything that
starts a browser or a real `darkroom run`/worker process, the OS-level proofs, the Redis and
PostgreSQL tests, the big hostile-input and fuzz runs are `slow` (marked here, at collection,
so that test files keep only what they test).

Under pytest-xdist (`-n auto --dist loadgroup`; not the README's command: on this project's
2-core machine at load 10-12 the inner loop took 221 s with -n 2 against 232 s serially, for
36% more CPU time, and the full suite is mostly slow tests that run alone or in one group):
- the tests on the shared test Redis (tests/services/redis.sh) run one after another on one
  worker (xdist group "redis"): some change settings of the whole server (CONFIG SET
  appendonly, ...) that the others would read. Each worker also takes its own databases
  (tests/services/redis_plugin.py); each PostgreSQL test already makes its own database.
- tests that measure time or memory, or trace processes (ALONE), run alone: a lock file shared
  by the workers is held shared by every other test and exclusively by these, so that they do
  not read the other worker's load as their own.
"""

from __future__ import annotations

import fcntl
import tempfile
from pathlib import Path

import pytest

# Whole files (or directories) that are slow, with why.
SLOW_PATHS = {
    "tests/e2e/": "the real python-telegram-bot / WeChat stack against fakes, real bot processes",
    "tests/proofs/": "OS-level proofs: strace, namespaces, core dumps, memory scans of a live bot",
    "tests/hostile/": "hundreds of hostile files, each decoded in a child process; fuzzing",
    "tests/webapp/test_browser.py": "Chromium",
    "tests/webapp/test_page_flow.py": "Chromium, at phone and desktop size",
    "tests/webapp/test_page_memory.py": "Chromium with 48 and 100 MP photos",
    "tests/webapp/test_page_send_rules.py": "a real bot and 60 uploads",
    "tests/webapp/test_run_local.py": "a real `darkroom run`",
    "tests/deploy/": "the container image built and run with podman, and a compose stack",
    "tests/webapp/test_js_units.py": "Node.js and the engine's references",
    "tests/shared/test_wechat_processes.py": "several real bot processes",
    "tests/test_hardening.py": "a fresh interpreter per check",
    "tests/test_bounded_run.py": "small pytest runs of their own",
    "tests/inference/test_backends.py": "OpenVINO compiles and every backend timed and compared",
    "tests/inference/test_networks.py": "the rewritten network against the package's, at many sizes",
}

# Single slow tests in otherwise quick files (node ids without parameters), with why.
SLOW_TESTS = {
    **dict.fromkeys([  # each builds its own engine, as `darkroom stylize`/`sheet` would
        "tests/test_cli.py::test_stylize_writes_a_labelled_jpeg",
        "tests/test_cli.py::test_stylize_with_a_picture_as_style",
        "tests/test_cli.py::test_unknown_style_and_bad_strength_are_one_line_errors",
        "tests/test_cli.py::test_sheet_shows_every_style_labelled",
        "tests/test_cli.py::test_stylize_without_a_style_uses_the_default_style",
        "tests/test_cli.py::test_styles_engine_shows_the_backend_chosen_here",
    ], "a real engine built, its backend chosen by timing"),
    **dict.fromkeys([
        "tests/webapp/test_webapp_server.py::test_darkroom_run_on_a_busy_port_ends_with_one_clear_line",
        "tests/bot/test_database_settings.py::test_an_unreachable_database_stops_darkroom_run_with_one_line_and_no_password",
        "tests/shared/test_redis_marker.py::test_skipped_with_a_reason_outside_ci",
        "tests/shared/test_redis_marker.py::test_failed_in_ci",
    ], "a real process (darkroom run, or pytest)"),
    **dict.fromkeys([
        "tests/inference/test_decode_limits.py::test_cancel_stops_a_running_network",
        "tests/inference/test_decode_limits.py::test_the_largest_real_input_fits_the_memory_budget",
        "tests/inference/test_decode_limits.py::test_the_scan_bomb_is_also_stopped_by_the_cpu_limit_when_the_count_is_not_enough",
        "tests/inference/test_decode_limits.py::test_a_decode_burning_cpu_is_killed_by_the_kernel_at_its_cpu_limit",
        "tests/inference/test_heif_avif.py::test_large_ones_are_brought_down_to_the_working_size",
    ], "full-size decodes, or limits that take seconds of CPU to reach"),
}

# Markers whose tests are slow (they need a real server, or root and strace).
SLOW_MARKERS = ("os_level", "redis", "postgres")

# Tests that run alone under pytest-xdist (see the module's docstring).
ALONE = (
    "tests/proofs/",  # strace, memory scans, crash timing
    "tests/webapp/test_browser.py",  # Chromium against a real bot, under timeouts
    "tests/e2e/test_flood.py",  # answer times under a flood (< 1.5 s)
    "tests/e2e/test_workers.py",  # worker processes started and killed under deadlines
    "tests/shared/test_ratelimit.py",  # rates measured on the wall clock
    "tests/bot/test_router.py",  # lanes measured to 0.1 s
    "tests/bot/test_telegram_send.py",  # flood waits measured to 0.1 s
    "tests/inference/test_backends.py",  # backends timed against each other; RSS readings
    "tests/inference/test_decode_limits.py",  # decode children under wall-clock limits
    # Seen failing under -n 2 on a machine at load 12: a 1 s upload race, a 120 s start-up.
    "tests/handlers/test_consent_truth.py::test_erasure_while_the_styled_photo_uploads_deletes_it_when_it_lands",
    "tests/webapp/test_webapp_server.py::test_darkroom_run_on_a_busy_port_ends_with_one_clear_line",
)


def _matches(nodeid: str, prefixes) -> bool:
    return any(nodeid.startswith(p) for p in prefixes)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the marks added here
def pytest_collection_modifyitems(config, items) -> None:
    seen = set()
    for item in items:
        if _matches(item.nodeid, SLOW_PATHS) or any(item.get_closest_marker(m) for m in SLOW_MARKERS):
            item.add_marker(pytest.mark.slow)
        for test in SLOW_TESTS:
            if item.nodeid == test or item.nodeid.startswith(test + "["):
                item.add_marker(pytest.mark.slow)
                seen.add(test)
        if item.get_closest_marker("redis"):
            item.add_marker(pytest.mark.xdist_group("redis"))
    # A renamed test must not silently join the inner loop: every name here must still exist
    # (checked when the whole suite is collected).
    stale = set(SLOW_TESTS) - seen
    if stale and config.args_source == pytest.Config.ArgsSource.TESTPATHS:
        raise pytest.UsageError(f"tests/run_plan.py names tests that do not exist: {sorted(stale)}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under pytest-xdist: a test in ALONE holds the run's lock exclusively (setup to teardown),
    every other test holds it shared. Without xdist this does nothing."""
    run = getattr(item.config, "workerinput", {}).get("testrunuid")
    if run is None:
        return (yield)
    # The run's base temporary directory (pytest-N, shared by the workers, cleaned up by pytest).
    factory = getattr(item.config, "_tmp_path_factory", None)
    directory = factory.getbasetemp().parent if factory is not None else Path(tempfile.gettempdir())
    # A writer first takes the turnstile, so that a stream of shared holders cannot starve it.
    with open(directory / f"darkroom-pytest-{run}.turnstile", "a") as turnstile, \
            open(directory / f"darkroom-pytest-{run}.lock", "a") as lock:
        alone = _matches(item.nodeid, ALONE)
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
