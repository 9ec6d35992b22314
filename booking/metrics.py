"""The service's Prometheus metrics, in one place (served by booking/api/metrics.py at /metrics).

Counters and histograms are updated where things happen; the backlogs are read
from the database when Prometheus scrapes (:class:`BacklogCollector`), so they
cost nothing between scrapes. With ``PROMETHEUS_MULTIPROC_DIR`` set (before
any process imports prometheus_client) every process of the machine, web
server workers, the ASGI servers and Celery workers alike, writes its values to files
there and one scrape sums them (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# --- What the sale does (counted once the change has committed: booking/activity.py) ---
BOOKINGS_CONFIRMED = Counter("booking_bookings_confirmed_total", "Bookings made (a confirm, or the box office)")
SEATS_BOOKED = Counter("booking_seats_booked_total", "Seats booked")
HOLDS_CREATED = Counter("booking_holds_created_total", "Seats newly held (renewals not counted)")
HOLDS_EXPIRED = Counter("booking_holds_expired_total", "Holds recorded as expired (sweep, read or takeover)")
SEATS_RELEASED = Counter("booking_seats_released_total", "Holds released by their holder or the box office")
SEATS_CANCELLED = Counter("booking_seats_cancelled_total", "Booked seats cancelled")

# --- What callers were told (booking/api/exceptions.py) ---
API_CONFLICTS = Counter("booking_api_conflicts_total", "409 answers, by error code", ["code"])
API_BUSY = Counter("booking_api_busy_total", "503 busy answers (a row lock not granted in time, database down)")

# --- Where time goes ---
LOCK_WAIT_SECONDS = Histogram(
    "booking_lock_wait_seconds",
    "Time a seat write waited for its seats' row locks",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SWEEP_SECONDS = Histogram(
    "booking_sweep_duration_seconds",
    "One run of the expiry sweep (all its batches)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
PUSH_LAG_SECONDS = Histogram(
    "booking_live_push_lag_seconds",
    "From a seat change's database time to its live push leaving this process",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# --- Who watches (booking/consumers.py); livesum: a dead process's watchers are gone ---
LIVE_WATCHERS = Gauge(
    "booking_live_watchers", "WebSocket clients watching an event's seat map", ["event"], multiprocess_mode="livesum"
)

# --- Dependencies (the faults' guards count here) ---
DEPENDENCY_ERRORS = Counter(
    "booking_dependency_errors_total", "Calls to a dependency that failed or timed out", ["dependency"]
)

#: How long a scrape's backlog queries may take (PostgreSQL statement_timeout).
BACKLOG_QUERY_TIMEOUT_MS = 500


class BacklogCollector(Collector):
    """Gauges read at scrape time: expired holds the sweep has not released yet, and webhook
    deliveries that are due. Each is one indexed count, bounded by a statement timeout; a
    count that fails is left out of the scrape (and counted as a dependency error)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from .selectors import backlog_counts  # the app registry is ready by the first scrape

        try:
            expired, due = backlog_counts(timeout_ms=BACKLOG_QUERY_TIMEOUT_MS)
        except Exception:
            logger.warning("metrics: the backlog counts failed", exc_info=True)
            DEPENDENCY_ERRORS.labels("database").inc()
            return
        yield GaugeMetricFamily(
            "booking_expired_holds_unreleased", "Holds past their expiry that the sweep has not released yet", expired
        )
        yield GaugeMetricFamily("booking_webhook_deliveries_due", "Webhook deliveries due for an attempt now", due)
