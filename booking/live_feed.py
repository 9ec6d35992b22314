"""Fan-out of an event's seat changes to the WebSockets of one process that watch it.

A process has one feed per event it has watchers for. The feed alone is a
member of the event's channel-layer group (one layer channel of its own), so
a push costs the layer one message per event and live process, whatever the
number of watchers: with channels-redis' core layer one list per process,
not one per watcher. The feed gathers what comes for a round, keeps each
seat's newest version (dropping any state older than one it already sent),
numbers the round, encodes it once as a ``{"type": "seats"}`` frame and keeps
the last ``BACKLOG_ROUNDS`` rounds.

Each watcher sends from a task of its own (so a socket whose buffer is full
keeps no other waiting) and keeps only the shared snapshot it started from
and the number of the next round it has not sent. A watcher that is up to
date sends the round's shared frame; one that is behind (a slow socket, or
rounds that came while its snapshot went out) sends one frame that merges
every round it missed, newest state per seat, and watchers in the same place
share that frame too. Memory is the feed's, not a copy of the map per watcher.

Rounds last ``ROUND_SECONDS``, longer with many watchers: a process sends at
most about ``FRAMES_PER_SECOND`` frames a second (each costs the server the
same, whatever it holds), up to ``MAX_ROUND_SECONDS`` a round. In a rush the
rounds keep that cadence (each counted from the last one sent); a change after
a quiet spell waits only ``ROUND_SECONDS``.

The feed refreshes its group membership every ``REFRESH_SECONDS`` (the layer
expires members after ``group_expiry``), so a process that died leaves no
member behind for longer than that.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import weakref
from collections import deque
from typing import Any, Protocol

import orjson
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from .aio import cancel_and_wait
from .live import SEATS_LOST, event_group_name
from .representations import iso
from .selectors import event_seat_snapshot

logger = logging.getLogger(__name__)

#: The shortest round: how long a feed gathers changes before it sends them.
ROUND_SECONDS = 0.1
#: The longest round, however many watchers (a change reaches a watcher within about this).
MAX_ROUND_SECONDS = 0.5
#: Frames a second a process aims to send at most: rounds get longer with more watchers
#: (2 000 watchers: 0.5 s rounds). Measured in docs/benchmark.md.
FRAMES_PER_SECOND = 4000
#: Rounds a feed keeps for watchers that are behind; one further behind is told to resync.
BACKLOG_ROUNDS = 1200
#: How often a feed renews its group membership; below the layer's group_expiry.
REFRESH_SECONDS = 60.0
#: How often a feed whose layer failed tries to join its group again.
REJOIN_SECONDS = 1.0
#: Snapshot rows per frame: about 0.4 MB of JSON, well under the server's 1 MiB message limit.
SNAPSHOT_ROWS = 5000
#: How long a snapshot read waits for more connects to share it (a burst costs a few reads).
SNAPSHOT_GATHER_SECONDS = 0.02

_serials = itertools.count(1)


class Snapshot:
    """An event's seat map as its frames (encoded once, sent to every watcher that shares the read),
    its seats' versions, and the first round that may hold a change the read did not see."""

    def __init__(self, versions: dict[int, int], frames: list[str]) -> None:
        self.versions = versions
        self.frames = frames
        self.serial = next(_serials)
        self.first_round = 0


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


class Round:
    """One round's changes: the newest state of each seat, and that as one frame."""

    __slots__ = ("number", "seats", "frame")

    def __init__(self, number: int, seats: list[dict[str, Any]]) -> None:
        self.number = number
        self.seats = seats
        self.frame = orjson.dumps({"type": "seats", "seats": seats}).decode()


class Watcher(Protocol):
    def wake(self) -> None: ...

    def resync(self) -> None: ...


class Behind(Exception):
    """The rounds a watcher still needs are no longer kept: it must resync."""


class EventFeed:
    """The changes of one event, for this process's watchers of it."""

    def __init__(self, event_id: int) -> None:
        self.event_id = event_id
        self.group = event_group_name(event_id)
        self.watchers: set[Watcher] = set()
        self.rounds: deque[Round] = deque(maxlen=BACKLOG_ROUNDS)
        #: The number of the newest round (0: none yet).
        self.last_round = 0
        #: Seat id -> the newest version the feed has sent: an older state that comes late is dropped.
        self.sent_versions: dict[int, int] = {}
        #: (snapshot serial, first round, last round) -> the frame for a watcher there (None: nothing new).
        self._frames: dict[tuple[int, int, int], str | None] = {}
        self._layer: Any = None
        self._channel: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        #: Set by a ``seats.lost`` message: every watcher resyncs after this round.
        self._lost = False
        self._lock = asyncio.Lock()
        self._next_read: asyncio.Future[Snapshot | None] | None = None

    async def snapshot(self) -> Snapshot | None:
        """The event's seat map read after the caller joined: a read not yet begun is shared by
        every watcher that asks before it begins (the rounds from its ``first_round`` on hold
        every change it may have missed)."""
        if self._next_read is None:
            self._next_read = asyncio.ensure_future(self._read_shared_snapshot())
        return await asyncio.shield(self._next_read)

    async def _read_shared_snapshot(self) -> Snapshot | None:
        await asyncio.sleep(SNAPSHOT_GATHER_SECONDS)
        self._next_read = None  # who asks from now on may have joined after this read began
        # A round sent before the read begins holds only changes committed before it (a push
        # leaves after its commit): the read sees them all.
        first_round = self.last_round + 1
        snapshot = await database_sync_to_async(read_snapshot)(self.event_id)
        if snapshot is not None:
            snapshot.first_round = first_round
        return snapshot

    def frame_for(self, snapshot: Snapshot, first_round: int) -> tuple[str | None, int]:
        """What a watcher that has ``snapshot`` and every round before ``first_round`` sends now:
        the frame (None when nothing is newer than it has), and the next round it needs.
        Raises Behind when those rounds are no longer kept."""
        last = self.last_round
        if first_round > last:
            return None, first_round
        key = (snapshot.serial, first_round, last)
        if key not in self._frames:
            if not self.rounds or first_round < self.rounds[0].number:
                raise Behind
            self._frames[key] = self._frame(snapshot, first_round)
        return self._frames[key], last + 1

    def _frame(self, snapshot: Snapshot, first_round: int) -> str | None:
        versions = snapshot.versions
        skip = first_round - self.rounds[0].number
        rounds = list(itertools.islice(self.rounds, skip, None))
        if len(rounds) == 1 and all(s["version"] > versions.get(s["id"], -1) for s in rounds[0].seats):
            return rounds[0].frame  # the common case: one round, all of it new to the watcher
        newest: dict[int, dict[str, Any]] = {}
        for round_ in rounds:  # rounds only ever carry newer versions of a seat than earlier rounds
            for seat in round_.seats:
                newest[seat["id"]] = seat
        seats = [seat for seat in newest.values() if seat["version"] > versions.get(seat["id"], -1)]
        return orjson.dumps({"type": "seats", "seats": seats}).decode() if seats else None

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
            await cancel_and_wait(*tasks)
            with contextlib.suppress(Exception):  # a layer that is down: the member expires by itself
                await layer.group_discard(self.group, channel)
            return True

    async def _read(self, layer: Any, channel: str) -> None:
        """The layer's messages for this feed, into the feed's own queue (cancel-safe for the rounds).
        After the layer failed, the feed joins its group again (a restarted Redis has forgotten it)
        and its watchers resync: what was pushed meanwhile may be lost."""
        inbox = self._inbox
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the layer is down: the watchers keep what they have
                logger.warning(
                    "live feed of event %s: channel layer receive failed; rejoining", self.event_id, exc_info=True
                )
                await self._rejoin(layer, channel)
                message = SEATS_LOST
            inbox.put_nowait(message)

    async def _rejoin(self, layer: Any, channel: str) -> None:
        while True:
            await asyncio.sleep(REJOIN_SECONDS)
            try:
                await layer.group_add(self.group, channel)
                return
            except Exception:
                continue

    async def _refresh(self, layer: Any, channel: str) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            with contextlib.suppress(Exception):
                await layer.group_add(self.group, channel)

    def round_seconds(self) -> float:
        return max(ROUND_SECONDS, min(MAX_ROUND_SECONDS, len(self.watchers) / FRAMES_PER_SECOND))

    async def _rounds(self) -> None:
        inbox = self._inbox
        loop = asyncio.get_running_loop()
        last_published = -MAX_ROUND_SECONDS
        while True:
            newest: dict[int, dict[str, Any]] = {}
            self._take(newest, await inbox.get())
            # In a rush a round ends a round's length after the last one, not after its own first
            # change (which came up to a push's gathering later: 0.67 s apart instead of 0.5 at
            # 2 000 watchers); after a quiet spell a change waits only the shortest round.
            deadline = max(loop.time() + ROUND_SECONDS, last_published + self.round_seconds())
            while (left := deadline - loop.time()) > 0:
                try:
                    async with asyncio.timeout(left):  # not wait_for: it can lose a cancel (booking/aio.py)
                        message = await inbox.get()
                except TimeoutError:
                    break
                self._take(newest, message)
            while not inbox.empty():
                self._take(newest, inbox.get_nowait())
            last_published = loop.time()
            try:
                self._publish(list(newest.values()))
                if self._lost:
                    self._resync_all()
            except Exception:  # one bad round must not end the feed
                logger.exception("live feed of event %s: a round failed", self.event_id)

    def _take(self, newest: dict[int, dict[str, Any]], message: dict[str, Any]) -> None:
        if message.get("type") == SEATS_LOST["type"]:
            self._lost = True
            return
        sent = self.sent_versions
        for seat in message.get("seats", ()):
            seat_id, version = seat["id"], seat["version"]
            kept = newest.get(seat_id)
            if version > sent.get(seat_id, -1) and (kept is None or version > kept["version"]):
                newest[seat_id] = seat

    def _publish(self, seats: list[dict[str, Any]]) -> None:
        if not seats:
            return
        for seat in seats:
            self.sent_versions[seat["id"]] = seat["version"]
        self.last_round += 1
        self.rounds.append(Round(self.last_round, seats))
        self._frames = {}  # every key named an older last round
        for watcher in list(self.watchers):
            watcher.wake()

    def _resync_all(self) -> None:
        """Changes may have been lost: every watcher resyncs (a fresh snapshot, on reconnecting)."""
        self._lost = False
        watchers = list(self.watchers)
        logger.info(
            "live feed of event %s: changes may have been lost; %s watcher(s) resync", self.event_id, len(watchers)
        )
        for watcher in watchers:
            watcher.resync()


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
