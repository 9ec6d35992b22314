"""Publishing seat changes to live clients.

Services call :func:`publish_seat_changes` from ``transaction.on_commit`` so
that nothing is pushed for a change that rolled back.

How a push leaves the process depends on where the write ran:

- In a thread of an ASGI server (daphne in ``make run``, uvicorn in the ``live`` process),
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
the seat's ``version`` lets clients ignore stale ones. A push that could not be
sent is not forgotten: its event's group is told ``seats.lost`` once the layer
answers again, and every watcher of it resyncs (a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

from . import dependencies
from .metrics import PUSH_LAG_SECONDS

logger = logging.getLogger(__name__)

#: How long a process that exits waits for its pushes still in flight.
FLUSH_SECONDS = 5.0
#: How long the publisher gathers changes before it sends them: under load,
#: one group message then carries the changes of many requests (the spec asks
#: for a push within a second).
GATHER_SECONDS = 0.05


#: The message that tells an event's group its pushes may have been lost: its watchers resync.
SEATS_LOST = {"type": "seats.lost"}


def event_group_name(event_id: int) -> str:
    return f"event-{event_id}"


def publish_seat_changes(seats: Iterable[dict[str, Any]], *, changed_at: datetime | None = None) -> None:
    """Send each changed seat (its API payload) to the clients watching its event.

    One channel-layer message per event carries all its changed seats; the
    WebSocket consumer sends one ``{"type": "seat"}`` frame per seat.
    ``changed_at``: the change's time on the database's clock (else now), from
    which booking_live_push_lag_seconds counts.
    """
    started = changed_at.timestamp() if changed_at is not None else time.time()
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
        _observe_lag([started])
    elif not isinstance(layer, InMemoryChannelLayer):
        publisher.submit(layer, changes, started)


def _observe_lag(starts: list[float]) -> None:
    now = time.time()
    for started in starts:
        # Two clocks (the database's, this server's): a skew below zero counts as no lag.
        PUSH_LAG_SECONDS.observe(max(0.0, now - started))


def flush(timeout: float = FLUSH_SECONDS) -> bool:
    """Wait until this process's pushes in flight have been sent; True if none is left."""
    return publisher.flush(timeout)


Changes = list[tuple[str, list[dict[str, Any]]]]


#: How long the publisher thread's group message may take. No request waits for that thread, and
#: on a loaded machine the dependency timeout (0.3 s) tripped the breaker with Redis up (the thread
#: waited for the interpreter, not for Redis), dropping 10 s of pushes (docs/benchmark.md).
PUBLISHER_TIMEOUT = 2.0


async def _send(layer, changes: Changes, timeout: float | None = None) -> None:
    """Each group message waits at most ``timeout`` (the dependency timeout in a request's
    thread); none is tried while the channel layer's breaker is open (booking/dependencies.py
    counts and logs the failures), so a layer that is down or silent neither holds a request
    (the ASGI server's threads wait for this) nor lets the publisher's queue grow. The groups
    whose changes were not sent are told ``seats.lost`` once the layer answers again."""
    breaker = dependencies.channel_layer
    if timeout is None:
        timeout = _dependency_timeout()
    for index, (group, seats) in enumerate(changes):
        if not breaker.allow():
            lost_groups.add(group for group, _ in changes[index:])
            return  # best effort: the clients resync once the layer is back
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can lose a cancel (booking/aio.py)
                await layer.group_send(group, {"type": "seats.changed", "seats": seats})
        except Exception as error:  # a lost push must never undo or fail a committed booking
            breaker.failed(error)
            lost_groups.add(group for group, _ in changes[index:])
            return
        breaker.succeeded()
    await tell_lost(layer, timeout)


class LostGroups:
    """The groups whose pushes this process could not send (the layer failed, or its breaker was
    open): their watchers may miss a change until they resync, so each group is sent
    ``{"type": "seats.lost"}`` once the layer answers again, and its feeds tell their watchers to
    resync (booking/live_feed.py). Shared by the process's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[str] = set()

    def add(self, groups: Iterable[str]) -> None:
        with self._lock:
            self._groups.update(groups)

    def take(self) -> list[str]:
        with self._lock:
            groups, self._groups = sorted(self._groups), set()
        return groups

    def __bool__(self) -> bool:
        return bool(self._groups)

    def clear(self) -> None:
        with self._lock:
            self._groups.clear()


lost_groups = LostGroups()


async def tell_lost(layer, timeout: float | None = None) -> None:
    """Send ``seats.lost`` to every group that lost a push, if the layer's breaker lets us; a group
    not told stays lost (the next push, or the publisher's retry, tries again)."""
    if not lost_groups or not dependencies.channel_layer.allow():
        return
    groups = lost_groups.take()
    for index, group in enumerate(groups):
        try:
            async with asyncio.timeout(timeout or _dependency_timeout()):
                await layer.group_send(group, SEATS_LOST)
        except Exception as error:
            dependencies.channel_layer.failed(error)
            lost_groups.add(groups[index:])
            return
        dependencies.channel_layer.succeeded()
    logger.info("live: told %s group(s) that pushes were lost: their watchers resync", len(groups))


def _dependency_timeout() -> float:
    return getattr(settings, "DEPENDENCY_TIMEOUT", dependencies.TIMEOUT)


def _publisher_timeout() -> float:
    return max(PUBLISHER_TIMEOUT, _dependency_timeout())


def _server_event_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of the ASGI server whose sync thread this is, if any (asgiref sets it)."""
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is not None and not loop.is_closed():
        return loop
    return None


class Publisher:
    """One daemon thread per process whose event loop sends the pushes, one at a time.

    A caller appends its changes to a queue and goes on; only the first change
    after a send wakes the thread (``call_soon_threadsafe``), so under load a
    request never waits for the thread to be scheduled. The thread then gathers
    for ``GATHER_SECONDS`` and sends what came, in the order it came, one group
    message per event, one after the other on one Redis connection; changes that
    come meanwhile leave in the next round.

    Started on first use, and again in a forked child (a Celery pool process,
    a web server worker), where the parent's thread does not exist.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: collections.deque = collections.deque()
        #: True from a wake-up call until the thread takes the queue: no more wake-ups needed.
        self._awake = False
        self._sending = False
        #: True while a task waits to tell the lost groups (LostGroups).
        self._retrying = False

    def submit(self, layer, changes: Changes, started: float | None = None) -> None:
        loop = self._running_loop()
        self._queue.append((layer, changes, time.time() if started is None else started))
        if not self._awake:
            self._awake = True
            loop.call_soon_threadsafe(self._start_round)

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

    def _start_round(self) -> None:
        if not self._sending:
            self._sending = True
            asyncio.get_running_loop().create_task(self._send_rounds())

    async def _drained(self) -> None:
        while self._queue or self._sending:
            await asyncio.sleep(0.005)

    async def _send_rounds(self) -> None:
        try:
            while True:
                await asyncio.sleep(GATHER_SECONDS)
                # Reset before taking the queue: a change appended after this either is taken
                # below or sees the flag down and wakes the thread again.
                self._awake = False
                pending: dict[tuple[Any, str], list[dict[str, Any]]] = {}
                starts: list[float] = []
                while self._queue:
                    layer, changes, started = self._queue.popleft()
                    starts.append(started)
                    for group, seats in changes:
                        pending.setdefault((layer, group), []).extend(seats)
                if not pending:
                    return
                for (layer, group), seats in pending.items():
                    await _send(layer, [(group, seats)], _publisher_timeout())
                _observe_lag(starts)
                if lost_groups:
                    self._retry_lost_later()
        finally:
            self._sending = False

    def _retry_lost_later(self) -> None:
        """Tell the lost groups once the breaker lets a trial through, even if no push comes."""
        if self._retrying:
            return
        self._retrying = True

        async def retry() -> None:
            try:
                while lost_groups:
                    await asyncio.sleep(dependencies.retry_seconds())
                    layer = get_channel_layer()  # the settings' layer now (tests change it)
                    if layer is not None:
                        await tell_lost(layer, _publisher_timeout())
            finally:
                self._retrying = False

        asyncio.get_running_loop().create_task(retry())

    def _run(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        loop.run_forever()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None and self._pid == os.getpid():
            return loop
        with self._lock:
            if self._pid != os.getpid() or self._loop is None:
                loop = asyncio.new_event_loop()
                self._queue, self._awake, self._sending = collections.deque(), False, False
                self._retrying = False
                started = threading.Event()
                threading.Thread(target=self._run, args=(loop, started), name="live-publisher", daemon=True).start()
                started.wait()
                self._loop, self._pid = loop, os.getpid()
            return self._loop


publisher = Publisher()
atexit.register(flush)
