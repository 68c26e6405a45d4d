"""``/metrics`` in the Prometheus text format (prometheus-client).

Requests are counted and timed per method, route template and status class: never per raw URL,
so no id or identity code becomes a label and the series stay bounded (a path no route matches
is ``unmatched``, an unknown method ``other``). Compliance gaps are counted per region on
scrape, with one grouped query at most every ``SILTA_METRICS_GAP_SECONDS`` per process, so that a
scraper (``/metrics`` needs no token) cannot turn into database load.

Several uvicorn workers (``silta serve --workers N``) share their counts through
prometheus-client's multiprocess mode: ``silta serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a
fresh folder, and a scrape of any worker sums them all. Separate processes behind a load
balancer are scraped one by one, as Prometheus expects.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from app.services.clock import today
from app.services.compliance import count_gaps

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the text format every Prometheus reads
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
log = logging.getLogger("silta")


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class GapCollector(Collector):
    """Open and overdue compliance gaps per region, as of the last refresh."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_gaps = GaugeMetricFamily(
            "silta_compliance_gaps_open", "Open compliance gaps (a required named worker missing)", labels=["region"]
        )
        overdue = GaugeMetricFamily(
            "silta_compliance_gaps_overdue", "Open compliance gaps past their due date", labels=["region"]
        )
        for region, (opened, late) in sorted(self.counts.items()):
            open_gaps.add_metric([region], opened)
            overdue.add_metric([region], late)
        yield open_gaps
        yield overdue


class Metrics:
    """One application's metrics: request counters and latencies, and the gap gauges."""

    def __init__(self, *, gap_seconds: float) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["method", "route", "status_class"]
        self.requests = Counter("silta_http_requests", "HTTP requests answered", labels, registry=self.registry)
        self.latency = Histogram(
            "silta_http_request_duration_seconds",
            "Time from the request's arrival to the end of its answer",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.gaps = GapCollector()
        self.registry.register(self.gaps)
        self.gap_seconds = gap_seconds
        self.gaps_read_at: float | None = None
        self._refreshing = asyncio.Lock()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method if method in METHODS else "other", route, status_class(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    async def refresh_gaps(self, factory: async_sessionmaker[AsyncSession]) -> None:
        """Count the gaps again unless the last count is younger than ``gap_seconds``."""
        async with self._refreshing:
            if self.gaps_read_at is not None and time.monotonic() - self.gaps_read_at < self.gap_seconds:
                return
            try:
                async with factory() as session:
                    self.gaps.counts = await count_gaps(session, on=today())
            except SQLAlchemyError as exc:
                log.warning("gap gauges left out: %s", type(exc).__name__)
                self.gaps.counts = {}  # no figure rather than a stale one
            self.gaps_read_at = time.monotonic()

    async def scrape(self, factory: async_sessionmaker[AsyncSession]) -> bytes:
        """The exposition: this process's registry, or every worker's in multiprocess mode."""
        await self.refresh_gaps(factory)
        if not os.environ.get(MULTIPROCESS_DIR):
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(self.gaps)
        return generate_latest(registry)
