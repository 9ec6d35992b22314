"""The live seat map of one event over a WebSocket (read-only).

On connect the client gets the whole seat map (``snapshot`` frames: the seats
as rows of ``columns``, in ``parts`` of at most ``SNAPSHOT_ROWS`` rows, so any
size of venue fits under the server's message size limit), then the event's
seat changes as ``{"type": "seats", "seats": [...]}`` frames, gathered per
round by the process's feed of the event (:mod:`booking.live_feed`).

The consumer joins the feed *before* it reads the snapshot, so no change
committed meanwhile is lost; changes that come before the snapshot is sent
wait, and are then sent only where newer than it. Every seat write bumps the
seat's ``version``, so a client never gets a state older than one it has.

A client acknowledges what it has received, ``{"ack": <frames received>}``,
every few frames; one that falls more than ``MAX_UNACKED`` frames behind gets
``{"type": "resync"}`` and is closed (4409), and reconnects for a fresh
snapshot, instead of the server buffering for it without bound.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer

from . import dependencies
from .live_feed import MAX_UNACKED, EventFeed, feeds
from .metrics import LIVE_WATCHERS

#: Close code for an event that does not exist (4000-4999 are the application's).
CLOSE_UNKNOWN_EVENT = 4404
#: Close code when the live feed cannot start (the channel layer is down): reconnect later.
#: (Not 1013: a server may send only 1000 and 3000-4999.)
CLOSE_TRY_AGAIN = 4503
#: Close code after ``resync``: the client fell too far behind and must reconnect.
CLOSE_RESYNC = 4409


class SeatMapConsumer(AsyncWebsocketConsumer):
    """``/ws/events/<id>/``: a snapshot, then the event's seat changes."""

    #: No layer channel per socket: the event's feed receives once for all of this process's watchers.
    channel_layer_alias = None

    feed: EventFeed | None = None
    #: Seat id -> the newest version this client has; None until the snapshot is read.
    versions: dict[int, int] | None = None
    #: The event this client is counted as watching (booking_live_watchers), once it got its snapshot.
    watching: str | None = None
    #: Offers that came before the snapshot was sent; None once it has been.
    held: list[tuple[str, list[tuple[int, int]], list[dict[str, Any]]]] | None = None
    sent = 0
    acked = 0
    done = False

    async def connect(self) -> None:
        event_id = self.scope["url_route"]["kwargs"]["event_id"]
        self.held = []
        # Accept at once: in a burst of connects the handshake must not wait for the snapshot
        # (daphne closes a handshake after 5 s), and a close needs an accepted socket to carry a code.
        await self.accept()
        try:
            self.feed = await feeds().join(event_id, self)
        except Exception as error:  # the channel layer is down or slow: no live changes to promise
            dependencies.channel_layer.failed(error)
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        snapshot = await self.feed.snapshot()
        if snapshot is None:
            await self._leave()
            await self.close(code=CLOSE_UNKNOWN_EVENT)
            return
        self.versions = dict(snapshot.versions)
        self.watching = str(event_id)
        LIVE_WATCHERS.labels(self.watching).inc()
        for frame in snapshot.frames:
            if self.done:
                return
            await self._send_frame(frame)
            await asyncio.sleep(0)  # a big map does not keep the other sockets waiting
        held, self.held = self.held or [], None
        for frame, changes, changed in held:
            await self.offer(frame, changes, changed)

    async def offer(self, frame: str, changes: list[tuple[int, int]], seats: list[dict[str, Any]]) -> None:
        """A round's changes from the feed: the shared frame, or this client's newer part of it."""
        if self.done:
            return
        if self.held is not None:
            if len(self.held) >= MAX_UNACKED:
                await self._resync()
            else:
                self.held.append((frame, changes, seats))
            return
        if self.sent - self.acked >= MAX_UNACKED:
            await self._resync()
            return
        versions = self.versions
        if versions is None:
            return
        if all(version > versions.get(seat_id, -1) for seat_id, version in changes):
            for seat_id, version in changes:
                versions[seat_id] = version
            await self._send_frame(frame)
            return
        newer = [seat for seat in seats if seat["version"] > versions.get(seat["id"], -1)]
        if newer:
            for seat in newer:
                versions[seat["id"]] = seat["version"]
            await self._send_frame(orjson.dumps({"type": "seats", "seats": newer}).decode())

    async def _send_frame(self, text: str) -> None:
        self.sent += 1
        await self.send(text_data=text)

    async def _resync(self) -> None:
        self.done = True
        await self._leave()
        await self.send(text_data='{"type":"resync"}')
        await self.close(code=CLOSE_RESYNC)

    async def _leave(self) -> None:
        if self.watching is not None:
            LIVE_WATCHERS.labels(self.watching).dec()
            self.watching = None
        feed, self.feed = self.feed, None
        if feed is not None:
            await feeds().leave(feed, self)

    async def disconnect(self, code: int) -> None:
        self.done = True
        await self._leave()

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """Only ``{"ack": n}`` means something; anything else is ignored, junk included."""
        if not text_data or len(text_data) > 64:
            return
        try:
            content = orjson.loads(text_data)
        except orjson.JSONDecodeError:
            return
        if isinstance(content, dict) and type(content.get("ack")) is int:
            self.acked = max(self.acked, min(content["ack"], self.sent))


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path (or an id too long for the database): closed with 4404,
    as an unknown event is, instead of failing the handshake with a routing error."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_UNKNOWN_EVENT)
