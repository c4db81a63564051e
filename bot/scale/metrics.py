"""Prometheus metrics (prometheus-client): on the front at GET /metrics (DARKROOM_METRICS=true),
on each worker at DARKROOM_WORKER_METRICS_HOST:PORT, served by its main process for all its
styling processes (bot/scale/health.py: multiprocess mode, so counts outlive a replaced process).

Labels carry only an outcome kind (handlers/pipeline.py OutcomeKind): never a person, chat or file id.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

SECONDS = (0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60, 120, 300)


class _Jobs:
    def __init__(self, registry: CollectorRegistry, where: str) -> None:
        self.jobs = Counter("darkroom_jobs", f"Styling jobs ({where}) by outcome", ["outcome"], registry=registry)
        self.styling = Histogram("darkroom_styling_seconds", "Time to load and render a job's photos", buckets=SECONDS, registry=registry)
        self.job = Histogram(
            "darkroom_job_seconds", f"A job from its start to its outcome ({where}: end to end)", buckets=SECONDS, registry=registry
        )

    def observe(self, outcome, seconds: float) -> None:
        self.jobs.labels(outcome=outcome.kind).inc()
        if outcome.seconds:
            self.styling.observe(outcome.seconds)
        self.job.observe(seconds)


class FrontMetrics(_Jobs):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        super().__init__(self.registry, "front")
        self.waiting = Gauge("darkroom_queue_waiting", "Jobs waiting in the front's fair queue", registry=self.registry)
        self.running = Gauge("darkroom_queue_running", "Jobs running (in this process or sent to workers)", registry=self.registry)
        self.workers = Gauge("darkroom_workers", "Worker processes seen in the last 15 s (1 when styling in-process)", registry=self.registry)
        self.free = Gauge("darkroom_workers_free", "Of those, how many are free to take a job now", registry=self.registry)
        self.depth = Gauge(
            "darkroom_queue_depth",
            "Jobs waiting for a styling slot: in the front's queue and in the broker (for an autoscaler)",
            registry=self.registry,
        )

    async def render(self, queue, styler) -> tuple[bytes, str]:
        if queue is not None:
            self.waiting.set(queue.waiting)
            self.running.set(queue.running)
        capacity = getattr(styler, "capacity", None)
        broker = getattr(styler, "broker_waiting", None)
        waiting = queue.waiting if queue is not None else 0
        try:
            processes, free = await capacity() if capacity is not None else (1, int(queue is None or queue.running == 0))
            waiting += await broker() if broker is not None else 0
        except Exception:
            processes, free = 0, 0  # Redis is away: no worker can be seen
        self.workers.set(processes)
        self.free.set(free)
        self.depth.set(waiting)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class WorkerMetrics(_Jobs):
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # in multiprocess mode the values go to files
        super().__init__(self.registry, "worker")


class MeteredStyler:
    """Counts every job's outcome and times it, whichever styler runs it."""

    def __init__(self, styler, metrics: FrontMetrics) -> None:
        self.styler = styler
        self.metrics = metrics
        self.keeps_inputs = styler.keeps_inputs

    async def style(self, work, platform, held, on_upload):
        started = time.monotonic()
        outcome = await self.styler.style(work, platform, held, on_upload)
        self.metrics.observe(outcome, time.monotonic() - started)
        return outcome

    def __getattr__(self, name):
        return getattr(self.styler, name)
