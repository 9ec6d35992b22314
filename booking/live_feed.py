"""Fan-out of an event's seat changes to the WebSockets of one process that watch it.

A process has one feed per event it has watchers for. The feed alone is a
member of the event's channel-layer group (one layer channel of its own), so
a push costs the layer one message per event and live process, whatever the
number of watchers: with channels-redis' core layer one list per process,
not one per watcher. The feed gathers what comes for ``ROUND_SECONDS``, keeps
each seat's newest version, encodes one ``{"type": "seats"}`` frame per
round, and hands the same text to every watcher; a watcher that already has
a newer state of one of the seats gets its own, filtered frame instead.

Watchers acknowledge the frames they have received (``{"ack": n}``); one
that has more than ``MAX_UNACKED`` frames outstanding is told to resync
(``{"type": "resync"}``, then closed) instead of the process buffering for it
without bound; its page reconnects and gets a fresh snapshot.

The feed refreshes its group membership every ``REFRESH_SECONDS`` (the layer
expires members after ``group_expiry``), so a process that died leaves no
member behind for longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any, Protocol

import orjson
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from .live import event_group_name
from .representations import iso
from .selectors import event_seat_snapshot

logger = logging.getLogger(__name__)

#: How long a feed gathers changes before it sends them: a frame per watcher per round at most.
ROUND_SECONDS = 0.1
#: Frames a watcher may have outstanding (sent, not acknowledged) before it is told to resync.
MAX_UNACKED = 200
#: How often a feed renews its group membership; below the layer's group_expiry.
REFRESH_SECONDS = 60.0
#: Watchers served between two yields to the event loop, so other sockets are not kept waiting.
FAN_OUT_SLICE = 200
#: Snapshot rows per frame: about 0.4 MB of JSON, well under daphne's 1 MiB message limit.
SNAPSHOT_ROWS = 5000
#: How long a snapshot read waits for more connects to share it (a burst costs a few reads).
SNAPSHOT_GATHER_SECONDS = 0.02


class Snapshot:
    """An event's seat map as its frames (encoded once, sent to every watcher that shares the read)."""

    def __init__(self, versions: dict[int, int], frames: list[str]) -> None:
        self.versions = versions
        self.frames = frames


def read_snapshot(event_id: int) -> Snapshot | None:
    """The event's seat map read and encoded (a thread's work): ``snapshot`` frames of at most
    ``SNAPSHOT_ROWS`` rows of ``columns`` (the seat payload's keys but ``event``)."""
    found = event_seat_snapshot(event_id=event_id)
    if found is None:
        return None
    seats, now = found
    columns = [key for key in seats[0] if key != "event"] if seats else []
    parts = max(1, -(-len(seats) // SNAPSHOT_ROWS))
    frames = []
    for part in range(parts):
        chunk = seats[part * SNAPSHOT_ROWS : (part + 1) * SNAPSHOT_ROWS]
        rows = [[seat[key] for key in columns] for seat in chunk]
        frame = {"type": "snapshot", "event": event_id, "now": iso(now), "part": part, "parts": parts}
        frames.append(orjson.dumps({**frame, "columns": columns, "rows": rows}).decode())
    return Snapshot({seat["id"]: seat["version"] for seat in seats}, frames)


class Watcher(Protocol):
    async def offer(self, frame: str, changes: list[tuple[int, int]], seats: list[dict[str, Any]]) -> None: ...


class EventFeed:
    """The changes of one event, for this process's watchers of it."""

    def __init__(self, event_id: int) -> None:
        self.event_id = event_id
        self.group = event_group_name(event_id)
        self.watchers: set[Watcher] = set()
        self._layer: Any = None
        self._channel: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._next_read: asyncio.Future[Snapshot | None] | None = None

    async def snapshot(self) -> Snapshot | None:
        """The event's seat map read after the caller joined: a read not yet begun is shared by
        every watcher that asks before it begins (it then holds all their changes since)."""
        if self._next_read is None:
            self._next_read = asyncio.ensure_future(self._read_shared_snapshot())
        return await asyncio.shield(self._next_read)

    async def _read_shared_snapshot(self) -> Snapshot | None:
        await asyncio.sleep(SNAPSHOT_GATHER_SECONDS)
        self._next_read = None  # who asks from now on may have joined after this read began
        return await database_sync_to_async(read_snapshot)(self.event_id)

    async def join(self, watcher: Watcher) -> None:
        """Add a watcher; returns once the feed is in the group (changes from now on reach it).
        Raises what the layer raised when it could not join (the watcher is then not added)."""
        async with self._lock:
            if self._channel is None:
                self._layer = get_channel_layer()
                if self._layer is None:
                    self.watchers.add(watcher)
                    return
                channel = await self._layer.new_channel("feed.")
                await self._layer.group_add(self.group, channel)  # a layer that is down raises here
                self._channel = channel
                self._tasks = [
                    asyncio.ensure_future(self._read(self._layer, self._channel)),
                    asyncio.ensure_future(self._rounds()),
                    asyncio.ensure_future(self._refresh(self._layer, self._channel)),
                ]
            self.watchers.add(watcher)

    async def leave(self, watcher: Watcher) -> bool:
        """Remove a watcher; True when it was the last (the feed has left the group)."""
        async with self._lock:
            self.watchers.discard(watcher)
            if self.watchers or self._channel is None:
                return not self.watchers
            layer, channel, tasks = self._layer, self._channel, self._tasks
            self._channel, self._tasks = None, []
            self._inbox = asyncio.Queue()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):  # a layer that is down: the member expires by itself
                await layer.group_discard(self.group, channel)
            return True

    async def _read(self, layer: Any, channel: str) -> None:
        """The layer's messages for this feed, into the feed's own queue (cancel-safe for the rounds)."""
        inbox = self._inbox
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the layer is down: retry, the watchers keep what they have
                logger.warning("live feed of event %s: channel layer receive failed; retrying", self.event_id)
                await asyncio.sleep(1.0)
                continue
            inbox.put_nowait(message)

    async def _refresh(self, layer: Any, channel: str) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            with contextlib.suppress(Exception):
                await layer.group_add(self.group, channel)

    async def _rounds(self) -> None:
        inbox = self._inbox
        loop = asyncio.get_running_loop()
        while True:
            newest: dict[int, dict[str, Any]] = {}
            _take(newest, await inbox.get())
            deadline = loop.time() + ROUND_SECONDS
            while (left := deadline - loop.time()) > 0:
                try:
                    _take(newest, await asyncio.wait_for(inbox.get(), left))
                except TimeoutError:
                    break
            while not inbox.empty():
                _take(newest, inbox.get_nowait())
            try:
                await self._fan_out(list(newest.values()))
            except Exception:  # one bad round must not end the feed
                logger.exception("live feed of event %s: a round failed", self.event_id)

    async def _fan_out(self, seats: list[dict[str, Any]]) -> None:
        if not seats:
            return
        frame = orjson.dumps({"type": "seats", "seats": seats}).decode()
        changes = [(seat["id"], seat["version"]) for seat in seats]
        for index, watcher in enumerate(list(self.watchers)):
            if index and index % FAN_OUT_SLICE == 0:
                await asyncio.sleep(0)
            try:
                await watcher.offer(frame, changes, seats)
            except Exception:
                logger.exception("live feed of event %s: a watcher failed", self.event_id)


def _take(newest: dict[int, dict[str, Any]], message: dict[str, Any]) -> None:
    for seat in message.get("seats", ()):
        kept = newest.get(seat["id"])
        if kept is None or seat["version"] > kept["version"]:
            newest[seat["id"]] = seat


class Feeds:
    """The feeds of one event loop's process, one per watched event (made on the first watcher,
    dropped after the last). A watcher keeps the feed it joined and leaves that one."""

    def __init__(self) -> None:
        self._feeds: dict[int, EventFeed] = {}

    async def join(self, event_id: int, watcher: Watcher) -> EventFeed:
        feed = self._feeds.get(event_id)
        if feed is None:
            feed = self._feeds[event_id] = EventFeed(event_id)
        await feed.join(watcher)
        return feed

    async def leave(self, feed: EventFeed, watcher: Watcher) -> None:
        await feed.leave(watcher)
        # No await between the check and the removal: a watcher joining meanwhile keeps the feed.
        if not feed.watchers and self._feeds.get(feed.event_id) is feed:
            del self._feeds[feed.event_id]

    def watchers(self, event_id: int) -> int:
        feed = self._feeds.get(event_id)
        return len(feed.watchers) if feed else 0


_feeds_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Feeds] = weakref.WeakKeyDictionary()


def feeds() -> Feeds:
    """The running event loop's feeds (a server has one loop; tests start a loop per test)."""
    loop = asyncio.get_running_loop()
    found = _feeds_by_loop.get(loop)
    if found is None:
        found = _feeds_by_loop[loop] = Feeds()
    return found
