"""DRF's token authentication, its answer kept for a moment per process.

Under load one client sends many requests a second, and the token's lookup
(DRF's own: the token with its user, one query) is one of a request's round
trips. So each process keeps a token's user for ``BOOKING_TOKEN_CACHE_SECONDS``
(2 s; 0 turns it off). A token deleted, or a user changed or deactivated, in
this process is forgotten at once (signals, booking/apps.py); in another
process (another app server, the admin's) it still authenticates for at most
those seconds. Unknown tokens are never kept.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from rest_framework import authentication

#: Most tokens a process keeps at once; when full, the oldest entries go first.
TOKEN_CACHE_SIZE = 10_000


class _TokenCache:
    """Token key -> (user, token, expiry on the monotonic clock), for this process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, Any, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[Any, Any] | None:
        entry = self._entries.get(key)
        if entry is None or entry[2] <= time.monotonic():
            return None
        return entry[0], entry[1]

    def put(self, key: str, user: Any, token: Any, seconds: float) -> None:
        with self._lock:
            if len(self._entries) >= TOKEN_CACHE_SIZE:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[2] > now}
                while len(self._entries) >= TOKEN_CACHE_SIZE:  # dicts keep insertion order: oldest first
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = (user, token, time.monotonic() + seconds)

    def clear(self, **kwargs: Any) -> None:
        """Forget every token (a signal receiver: a token or a user changed in this process)."""
        with self._lock:
            self._entries = {}


token_cache = _TokenCache()


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        cached = token_cache.get(key)
        if cached is not None:
            return cached
        user, token = super().authenticate_credentials(key)  # raises for unknown keys and inactive users
        seconds = getattr(settings, "BOOKING_TOKEN_CACHE_SECONDS", 0)
        if seconds > 0:
            token_cache.put(key, user, token, seconds)
        return user, token
