"""The live seat map of one event over a WebSocket (read-only).

On connect the client gets the whole seat map (``snapshot`` frames: the seats
as rows of ``columns``, in ``parts`` of at most ``SNAPSHOT_ROWS`` rows, so any
size of venue fits under the server's message size limit), then the event's
seat changes as ``{"type": "seats", "seats": [...]}`` frames, gathered per
round by the process's feed of the event (:mod:`booking.live_feed`).

The consumer joins the feed *before* it reads the snapshot, so no change
committed meanwhile is lost; the rounds that come while the snapshot goes out
are sent after it, only where newer than it. Every seat write bumps the
seat's ``version``, so a client never gets a state older than one it has.

Each socket sends from a task of its own: the snapshot's parts one after the
other (each waits while the socket's buffer is full, so a burst of connects
does not pile the map up in memory once per client), then what the feed has
for it. Meanwhile the client's acknowledgements come in:
``{"ack": <frames received>}`` every few frames; one that falls more than
``MAX_UNACKED`` frames behind, or behind the rounds the feed keeps, gets
``{"type": "resync"}`` and is closed (4409), and reconnects for a fresh
snapshot, instead of the server buffering for it without bound. Every
watcher of an event resyncs the same way when changes may have been lost
(the channel layer failed: booking/live.py's ``seats.lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from channels.generic.websocket import AsyncWebsocketConsumer

from . import dependencies
from .aio import cancel_and_wait
from .live_feed import Behind, EventFeed, Snapshot, feeds
from .metrics import LIVE_WATCHERS

logger = logging.getLogger(__name__)

#: Close code for an event that does not exist (4000-4999 are the application's).
CLOSE_UNKNOWN_EVENT = 4404
#: Close code when the live feed cannot start (the channel layer is down): reconnect later.
#: (Not 1013: a server may send only 1000 and 3000-4999.)
CLOSE_TRY_AGAIN = 4503
#: Close code after ``resync``: the client fell too far behind and must reconnect.
CLOSE_RESYNC = 4409
#: Frames a client may have outstanding (sent, not acknowledged) before it is told to resync.
MAX_UNACKED = 200


class SeatMapConsumer(AsyncWebsocketConsumer):
    """``/ws/events/<id>/``: a snapshot, then the event's seat changes."""

    #: No layer channel per socket: the event's feed receives once for all of this process's watchers.
    channel_layer_alias = None

    feed: EventFeed | None = None
    #: The event this client is counted as watching (booking_live_watchers), once it got its snapshot.
    watching: str | None = None
    sender: asyncio.Task | None = None
    sent = 0
    acked = 0
    done = False
    #: The feed says changes may have been lost (booking/live.py: LostGroups): resync.
    must_resync = False

    async def connect(self) -> None:
        event_id = self.scope["url_route"]["kwargs"]["event_id"]
        self._woken = asyncio.Event()
        # Accept at once: in a burst of connects the handshake must not wait for the snapshot,
        # and a close needs an accepted socket to carry a code.
        await self.accept()
        try:
            self.feed = await feeds().join(event_id, self)
        except Exception as error:  # the channel layer is down or slow: no live changes to promise
            dependencies.channel_layer.failed(error)
            await self.close(code=CLOSE_TRY_AGAIN)
            return
        # Sent from a task of its own, so this consumer keeps reading the client's acks meanwhile.
        self.sender = asyncio.ensure_future(self._send_all(self.feed, event_id))

    def wake(self) -> None:
        """The feed has a new round."""
        self._woken.set()

    def resync(self) -> None:
        """The feed may have missed changes: this client resyncs once its snapshot is out."""
        self.must_resync = True
        self._woken.set()

    async def _send_all(self, feed: EventFeed, event_id: int) -> None:
        try:
            snapshot = await feed.snapshot()
            if snapshot is None:
                await self._leave()
                await self.close(code=CLOSE_UNKNOWN_EVENT)
                return
            self.watching = str(event_id)
            LIVE_WATCHERS.labels(self.watching).inc()
            for frame in snapshot.frames:
                await self._send_frame(frame)
            await self._send_changes(feed, snapshot)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database, or a socket gone mid-send: the client reconnects
            logger.exception("live map of event %s: sending failed", event_id)
            self.done = True
            await self._leave()
            with contextlib.suppress(Exception):
                await self.close(code=CLOSE_TRY_AGAIN)

    async def _send_changes(self, feed: EventFeed, snapshot: Snapshot) -> None:
        next_round = snapshot.first_round
        while not self.done:
            self._woken.clear()
            if self.must_resync:
                await self._resync()
                return
            try:
                frame, next_round = feed.frame_for(snapshot, next_round)
            except Behind:
                await self._resync()
                return
            if frame is None:
                await self._woken.wait()
                continue
            if self.sent - self.acked >= MAX_UNACKED:
                await self._resync()
                return
            await self._send_frame(frame)

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
        sender = self.sender
        if sender is not None and sender is not asyncio.current_task():
            await cancel_and_wait(sender)
        await self._leave()

    async def dispatch(self, message) -> None:
        # Channels closes stale database connections (a thread hop) before every handler; an
        # ack touches no database, and that hop was a quarter of the live process's CPU at
        # 2 000 watchers (docs/benchmark.md). Everything else goes the usual way.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

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

    channel_layer_alias = None  # it receives nothing: no layer channel (a Redis receive) per socket

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_UNKNOWN_EVENT)
