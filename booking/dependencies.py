"""Calls to the dependencies a feature can live without: the cache, the channel layer, the broker.

Each has one :class:`Breaker` per process. A failed or timed-out call (the
socket timeouts of settings ``DEPENDENCY_*`` bound it) opens the breaker for
``DEPENDENCY_RETRY_SECONDS``: meanwhile callers skip the dependency at once and
degrade their feature (rate limits let requests through, a live push is
dropped, a webhook waits for beat), so a dead Redis costs one short timeout
per process every few seconds, not one per request. Then one caller is let
through as a trial; its success closes the breaker. Failures are counted in
``booking_dependency_errors_total{dependency}`` and logged at most once per
``LOG_SECONDS`` per dependency.

pybreaker was the library to use, but it holds one lock across every call,
which would serialise all the requests of a process on the cache's round trip.
The database is not here: it decides health, and its errors are 503 busy.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.connection import Connection

logger = logging.getLogger(__name__)

#: At most one log line per dependency this often (a failure per request would flood the log).
LOG_SECONDS = 30.0
#: Defaults of settings DEPENDENCY_RETRY_SECONDS, DEPENDENCY_CONNECT_TIMEOUT, DEPENDENCY_TIMEOUT.
RETRY_SECONDS = 5.0
CONNECT_TIMEOUT = 0.2
TIMEOUT = 0.3

#: What a Redis client raises when its server is down, slow or refuses (and the breaker is open).
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def retry_seconds() -> float:
    """How long a failed dependency is skipped before a trial (DEPENDENCY_RETRY_SECONDS)."""
    return _setting("DEPENDENCY_RETRY_SECONDS", RETRY_SECONDS)


def _setting(name: str, default: float) -> float:
    from django.conf import settings

    return float(getattr(settings, name, default)) if settings.configured else default


class Breaker:
    """Skip a failing dependency for a while, then try it again once."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._failing = False
        self._retry_at = 0.0
        self._logged_at = -LOG_SECONDS

    @property
    def state(self) -> str:
        """``ok``, or ``down`` since the last call failed (until one succeeds)."""
        return "down" if self._failing else "ok"

    def allow(self) -> bool:
        """Whether to call the dependency now: always while it works; once per retry period while not."""
        if not self._failing:  # the common case, without the lock
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._retry_at:
                return False
            # This caller makes the trial; the others go on skipping until it is over.
            self._retry_at = now + _setting("DEPENDENCY_RETRY_SECONDS", RETRY_SECONDS)
            return True

    def succeeded(self) -> None:
        if self._failing:
            with self._lock:
                self._failing = False
            logger.warning("%s is back", self.name)

    def failed(self, error: BaseException) -> None:
        from .metrics import DEPENDENCY_ERRORS

        DEPENDENCY_ERRORS.labels(self.name).inc()
        now = time.monotonic()
        with self._lock:
            self._failing = True
            self._retry_at = now + _setting("DEPENDENCY_RETRY_SECONDS", RETRY_SECONDS)
            log = now - self._logged_at >= LOG_SECONDS
            if log:
                self._logged_at = now
        if log:
            logger.warning(
                "%s unavailable (%s: %s); skipped for %ss at a time, this line at most every %ss",
                self.name,
                type(error).__name__,
                error,
                _setting("DEPENDENCY_RETRY_SECONDS", RETRY_SECONDS),
                LOG_SECONDS,
            )

    def reset(self) -> None:
        with self._lock:
            self._failing, self._retry_at, self._logged_at = False, 0.0, -LOG_SECONDS


cache = Breaker("cache")
channel_layer = Breaker("channel_layer")
broker = Breaker("broker")
BREAKERS = {breaker.name: breaker for breaker in (cache, channel_layer, broker)}


class GuardedConnection(Connection):
    """A redis-py connection guarded by a dependency's breaker: while it is open, a connect fails
    at once; every failed connect or reply opens it, a reply closes it. Django's Redis cache
    uses :class:`CacheConnection` (settings: OPTIONS connection_class), so every user of the
    cache (the rate limits, the seat map) fails fast together."""

    breaker: Breaker

    def connect(self) -> None:
        if self._sock is not None:  # connected: nothing to ask
            return
        if not self.breaker.allow():
            raise redis.ConnectionError(f"{self.breaker.name} skipped: it failed less than a retry period ago")
        try:
            super().connect()
        except REDIS_ERRORS as error:
            self.breaker.failed(error)
            raise

    def read_response(self, *args, **kwargs):
        try:
            response = super().read_response(*args, **kwargs)
        except REDIS_ERRORS as error:
            self.breaker.failed(error)
            raise
        self.breaker.succeeded()
        return response


class CacheConnection(GuardedConnection):
    breaker = cache


class ChannelLayerConnection(GuardedConnection):
    breaker = channel_layer


class BrokerConnection(GuardedConnection):
    breaker = broker


def redis_options() -> dict[str, float]:
    """redis-py's socket timeouts for a dependency on Redis (settings)."""
    return {
        "socket_connect_timeout": _setting("DEPENDENCY_CONNECT_TIMEOUT", CONNECT_TIMEOUT),
        "socket_timeout": _setting("DEPENDENCY_TIMEOUT", TIMEOUT),
    }
