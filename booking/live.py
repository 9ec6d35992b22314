"""Publishing seat changes to live clients.

Services call :func:`publish_seat_changes` from ``transaction.on_commit`` so
that nothing is pushed for a change that rolled back.

How a push leaves the process depends on where the write ran:

- In a thread of an ASGI server (daphne: ``make run``, the ``live`` process),
  the push hops to that server's event loop, where an in-memory layer's
  consumers live.
- Elsewhere (the WSGI web server's threads, a Celery worker, a management
  command) there is no event loop. With the Redis layer the push goes to this
  process's one publisher thread, which runs an event loop of its own and so
  keeps one Redis connection for every push; the request does not wait for
  Redis. (``async_to_sync`` there would create an event loop, a thread and,
  with channels-redis, a new Redis connection for every single push.) An
  in-memory layer has no consumers in such a process, so there is nobody to
  tell and nothing is sent.

A push is best effort: a lost one never undoes or fails a committed change;
the seat's ``version`` lets clients ignore stale ones, and a client that
reconnects gets a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

#: How long a process that exits waits for its pushes still in flight.
FLUSH_SECONDS = 5.0
#: How long the publisher gathers changes before it sends them: under load,
#: one group message then carries the changes of many requests (the spec asks
#: for a push within a second).
GATHER_SECONDS = 0.05


def event_group_name(event_id: int) -> str:
    return f"event-{event_id}"


def publish_seat_changes(seats: Iterable[dict[str, Any]]) -> None:
    """Send each changed seat (its API payload) to the clients watching its event.

    One channel-layer message per event carries all its changed seats; the
    WebSocket consumer sends one ``{"type": "seat"}`` frame per seat.
    """
    by_event: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for seat in seats:
        by_event[seat["event"]].append(seat)
    if not by_event:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    changes = [(event_group_name(event_id), event_seats) for event_id, event_seats in by_event.items()]
    if _server_event_loop() is not None:
        async_to_sync(_send)(layer, changes)
    elif not isinstance(layer, InMemoryChannelLayer):
        publisher.submit(layer, changes)


def flush(timeout: float = FLUSH_SECONDS) -> bool:
    """Wait until this process's pushes in flight have been sent; True if none is left."""
    return publisher.flush(timeout)


Changes = list[tuple[str, list[dict[str, Any]]]]


async def _send(layer, changes: Changes) -> None:
    for group, seats in changes:
        try:
            await layer.group_send(group, {"type": "seats.changed", "seats": seats})
        except Exception:  # a lost push must never undo or fail a committed booking
            logger.exception("live push to %s failed", group)


def _server_event_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of the ASGI server whose sync thread this is, if any (asgiref sets it)."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is not None and not loop.is_closed():
        return loop
    return None


class Publisher:
    """One daemon thread per process whose event loop sends the pushes, one at a time.

    A caller only hands its changes over (``call_soon_threadsafe``) and goes on.
    The loop gathers what comes in for ``GATHER_SECONDS``, then sends it in the
    order it came, one group message per event, one after the other on one Redis
    connection; changes that pile up meanwhile leave in the next round.

    Started on first use, and again in a forked child (a Celery pool process,
    a web server worker), where the parent's thread does not exist.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Touched only on the publisher's loop:
        self._pending: dict[tuple[Any, str], list[dict[str, Any]]] = {}
        self._wake: asyncio.Event | None = None
        self._sending = False

    def submit(self, layer, changes: Changes) -> None:
        self._running_loop().call_soon_threadsafe(self._add, layer, changes)

    def flush(self, timeout: float) -> bool:
        with self._lock:
            loop = self._loop if self._pid == os.getpid() else None
        if loop is None:
            return True
        try:
            asyncio.run_coroutine_threadsafe(self._drained(), loop).result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def _add(self, layer, changes: Changes) -> None:
        for group, seats in changes:
            self._pending.setdefault((layer, group), []).extend(seats)
        self._wake.set()

    async def _drained(self) -> None:
        while self._pending or self._sending:
            await asyncio.sleep(0.005)

    async def _send_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._sending = True
            await asyncio.sleep(GATHER_SECONDS)
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, {}
                for (layer, group), seats in batch.items():
                    await _send(layer, [(group, seats)])
            self._sending = False

    def _run(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._wake = asyncio.Event()
        loop.create_task(self._send_forever())
        loop.call_soon(started.set)
        loop.run_forever()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None:
                loop = asyncio.new_event_loop()
                self._pending, self._sending = {}, False
                started = threading.Event()
                threading.Thread(target=self._run, args=(loop, started), name="live-publisher", daemon=True).start()
                started.wait()
                self._loop, self._pid = loop, os.getpid()
            return self._loop


publisher = Publisher()
atexit.register(flush)
