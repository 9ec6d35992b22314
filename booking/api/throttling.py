"""DRF's user and anonymous rate limits, counted per fixed window in the shared cache.

DRF's own throttles keep every request's timestamp of the last window in the
cache, read and written back whole on each request: with Redis (CACHE_URL, as
in production) two round trips, a pickled list that grows with the rate, a
redis-py client built anew for every cache call, and a read-modify-write that
lets concurrent requests through uncounted. That was a quarter of a booking's
CPU, and 20 requests at once passed a limit of 10.

Here a limit counts requests per window (``6000/minute``: per calendar
minute). On Redis, each process reserves a client's requests in chunks of
:data:`RESERVE_SHARE` of the limit with one atomic INCRBY, and lets requests
through from its chunk without asking Redis again; so all app servers
together never let more than the limit through in a window, and a client may
be refused early by at most the unused part of each process's chunk (1 % of
the limit per process). On any other cache (local memory, one process) every
request is counted with ``incr``.

A fixed window lets a client send up to twice its rate across the boundary
of two windows.

A cache that is down or does not answer lets requests through (fail open),
after at most the dependency timeouts (settings DEPENDENCY_*), once per
DEPENDENCY_RETRY_SECONDS per process: the other requests meanwhile skip the
cache at once (booking/dependencies.py).
"""

from __future__ import annotations

import threading

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from django.core.cache.backends.redis import RedisCache
from rest_framework import throttling

from ..dependencies import REDIS_ERRORS

#: The share of a limit a process reserves from Redis at once.
RESERVE_SHARE = 0.01
#: Reservations a process keeps before it drops those of past windows.
MAX_RESERVATIONS = 10_000


class _Reservations:
    """Requests this process has reserved in Redis and not let through yet, per counter key."""

    def __init__(self) -> None:
        self._left: dict[str, tuple[int, int]] = {}  # key -> (window, requests left)
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        with self._lock:
            window, left = self._left.get(key, (0, 0))
            if left <= 0:
                return False
            self._left[key] = (window, left - 1)
            return True

    def keep(self, key: str, window: int, left: int) -> None:
        """Add ``left`` requests to the key's reservation: threads that reserved at the same
        time each add their own chunk (one overwriting another's lost it: a client was
        refused with part of its limit unused)."""
        with self._lock:
            if len(self._left) >= MAX_RESERVATIONS:
                self._left = {k: v for k, v in self._left.items() if v[0] >= window}
            _, kept = self._left.get(key, (window, 0))
            self._left[key] = (window, kept + left)

    def clear(self) -> None:
        with self._lock:
            self._left = {}


reservations = _Reservations()


def _redis_client(cache: RedisCache, key: str):
    """A redis-py client kept on Django's Redis cache client (Django makes one per call)."""
    backend = cache._cache  # type: ignore[attr-defined]  # Django's RedisCacheClient: its connection pool
    client = getattr(backend, "booking_throttle_client", None)
    if client is None:
        client = backend.booking_throttle_client = backend.get_client(key, write=True)
    return client


def _allow(cache, key: str, window: int, seconds: int, limit: int) -> bool:
    """Whether one more request fits the window's counter ``key`` (kept ``seconds``) under ``limit``."""
    if cache is default_cache:  # DRF's default: the proxy; the backend behind it decides
        cache = caches[DEFAULT_CACHE_ALIAS]
    if not isinstance(cache, RedisCache):
        cache.add(key, 0, seconds)
        try:
            return cache.incr(key) <= limit
        except ValueError:  # the counter expired between add and incr
            cache.add(key, 1, seconds)
            return True
    if reservations.take(key):
        return True
    chunk = max(1, int(limit * RESERVE_SHARE))
    full_key = cache.make_and_validate_key(key)
    try:
        pipe = _redis_client(cache, full_key).pipeline(transaction=False)
        pipe.set(full_key, 0, ex=seconds, nx=True)
        pipe.incrby(full_key, chunk)
        reserved_up_to = pipe.execute()[1]
    except REDIS_ERRORS:
        # Fail open: the limits protect the service from one client, and a dead cache must not
        # refuse everyone. The cache's breaker (booking/dependencies.py) counted and logged
        # it, and skips Redis at once until its retry period is over.
        return True
    usable = min(chunk, limit - (reserved_up_to - chunk))  # of the units (reserved_up_to - chunk, reserved_up_to]
    if usable <= 0:
        return False
    if usable > 1:
        reservations.keep(key, window, usable - 1)
    return True


class FixedWindowThrottle(throttling.SimpleRateThrottle):
    wait_seconds: float = 0.0
    # Set by SimpleRateThrottle.__init__ from the rate (``6000/minute``: 6000 and 60).
    num_requests: int
    duration: int

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        if _allow(self.cache, f"{key}:{window}", window, self.duration + 1, self.num_requests):
            return True
        self.wait_seconds = (window + 1) * self.duration - now
        return False

    def wait(self):
        return self.wait_seconds


class UserRateThrottle(FixedWindowThrottle, throttling.UserRateThrottle):
    pass


class AnonRateThrottle(FixedWindowThrottle, throttling.AnonRateThrottle):
    pass
