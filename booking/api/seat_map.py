"""Cheap reads of the seat map: an ETag, 304 Not Modified, the rendered body kept, gzip.

The ETag comes from one indexed query (:func:`booking.selectors.event_seat_map_state`):
the event's seat-map counter, which every seat write bumps in its own transaction,
and the count of holds that ran out on the database's clock but that no write has
recorded yet (an expired hold reads as available at once, before any write). Given
the counter, the holds are fixed and run out in the order of their expiry, so the
count says which of them read as available: the pair names what a reader sees,
and it never comes back once it has moved on.

The rendered body (JSON, and gzip for the clients that accept it) is kept in
Django's cache, one entry per event and encoding, under the tag it was rendered
for, so visitors of an unchanged map cost the tag's query, not a read of every
seat. It is always read after its tag: the body is at least as new as the tag,
so a tag never stands for an older map than its body. docs/architecture.md.
"""

from __future__ import annotations

import gzip
import logging
import re
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils.cache import get_conditional_response

from .. import selectors, services
from .renderers import dumps

logger = logging.getLogger(__name__)

#: Part of the tag and of the cache key: bump it when a seat's JSON changes shape, so that
#: neither a client nor the cache keeps a body of the old shape as current.
FORMAT = 1
#: A map compresses 10 to 20 times; level 6 (gzip's default) costs a few ms on 50 000 seats.
GZIP_LEVEL = 6
_ACCEPTS_GZIP = re.compile(r"\bgzip\b")


def seat_map_etag(event_id: int, state: tuple[int, int, Any]) -> str:
    """A weak tag (the body's bytes differ with its encoding, not its meaning)."""
    version, expired, created_at = state
    return f'W/"{FORMAT}-{event_id}-{int(created_at.timestamp() * 1_000_000):x}-{version}-{expired}"'


def _cache_seconds() -> float:
    return getattr(settings, "BOOKING_SEAT_MAP_CACHE_SECONDS", 60.0)


def _cached(key: str, etag: str) -> bytes | None:
    try:
        entry = cache.get(key)
    except Exception:  # the cache is an optimisation: a broken one costs a read, never the answer
        # Counted and logged once in a while by the cache's breaker (booking/dependencies.py).
        logger.debug("seat map cache unavailable", exc_info=True)
        return None
    if entry is not None and entry[0] == etag:
        return entry[1]
    return None


def _keep(key: str, etag: str, body: bytes) -> None:
    try:
        cache.set(key, (etag, body), _cache_seconds())
    except Exception:
        logger.debug("seat map cache unavailable", exc_info=True)


def _key(event_id: int, encoding: str) -> str:
    # One entry per event and encoding, overwritten by the next tag: the cache holds at most
    # two bodies per event, however fast the map changes.
    return f"seat-map:{FORMAT}:{event_id}:{encoding}"


def _body(event_id: int, etag: str, *, compressed: bool) -> bytes:
    """The map's body for ``etag``: kept, or read (one query) and rendered, then kept."""
    if compressed:
        body = _cached(_key(event_id, "gzip"), etag)
        if body is None:
            body = gzip.compress(_body(event_id, etag, compressed=False), GZIP_LEVEL, mtime=0)
            _keep(_key(event_id, "gzip"), etag, body)
        return body
    body = _cached(_key(event_id, "json"), etag)
    if body is None:
        body = dumps(selectors.event_seat_map(event_id=event_id))
        _keep(_key(event_id, "json"), etag, body)
    return body


def _headers(response: HttpResponse, etag: str) -> HttpResponse:
    response["ETag"] = etag
    # Every use asks first (a 304 costs one query); intermediaries keep one copy per encoding.
    response["Cache-Control"] = "no-cache"
    response["Vary"] = "Accept-Encoding"
    return response


def seat_map_response(request: HttpRequest, event_id: int) -> HttpResponse | None:
    """The seat map's answer: 304 when the client's tag is current, else 200; None for an
    unknown event. Expired holds of the event are released first, as every read does."""
    started = time.perf_counter()
    state = selectors.event_seat_map_state(event_id=event_id)
    if state is not None and state[1]:
        services.holds_release_expired_if_any(event_id=event_id)
        state = selectors.event_seat_map_state(event_id=event_id)
    if state is None:
        return None
    etag = seat_map_etag(event_id, state)
    not_modified = get_conditional_response(request, etag=etag)
    if not_modified is not None:
        return _headers(not_modified, etag)
    compressed = bool(_ACCEPTS_GZIP.search(request.META.get("HTTP_ACCEPT_ENCODING", "")))
    response = HttpResponse(_body(event_id, etag, compressed=compressed), content_type="application/json")
    if compressed:
        response["Content-Encoding"] = "gzip"
    response["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    return _headers(response, etag)
