"""The live seat map of one event over a WebSocket (read-only).

On connect the client gets the whole seat map once (``snapshot``), then one
``seat`` message per change of a seat of that event, as pushed after commit
by :func:`booking.live.publish_seat_changes`.

The consumer joins the event's group *before* it reads the snapshot, so no
change committed meanwhile is lost; such a change is then also queued for
the client, and may be older than the snapshot. Every seat write bumps the
seat's ``version``, so the consumer sends a pushed seat only when it is newer
than what this client already has.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from .live import event_group_name
from .metrics import LIVE_WATCHERS
from .representations import iso
from .selectors import event_seat_snapshot

#: Close code for an event that does not exist (4000-4999 are the application's).
CLOSE_UNKNOWN_EVENT = 4404


class SeatMapConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/events/<id>/``: a snapshot, then the event's seat changes."""

    group: str | None = None
    #: Seat id -> the newest version this client has; None until the snapshot is sent.
    versions: dict[int, int] | None = None
    #: The event this client is counted as watching (booking_live_watchers), once it got its snapshot.
    watching: str | None = None

    async def connect(self) -> None:
        event_id = self.scope["url_route"]["kwargs"]["event_id"]
        group = event_group_name(event_id)
        await self.channel_layer.group_add(group, self.channel_name)
        self.group = group
        snapshot = await database_sync_to_async(event_seat_snapshot)(event_id=event_id)
        await self.accept()
        if snapshot is None:
            # Accept first: a close before the handshake carries no code to the browser.
            await self.channel_layer.group_discard(group, self.channel_name)
            self.group = None
            await self.close(code=CLOSE_UNKNOWN_EVENT)
            return
        seats, now = snapshot
        self.versions = {seat["id"]: seat["version"] for seat in seats}
        self.watching = str(event_id)
        LIVE_WATCHERS.labels(self.watching).inc()
        await self.send_json({"type": "snapshot", "event": event_id, "now": iso(now), "seats": seats})

    async def disconnect(self, code: int) -> None:
        if self.watching is not None:
            LIVE_WATCHERS.labels(self.watching).dec()
            self.watching = None
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs) -> None:
        """The socket is read-only: what a client sends is ignored."""

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        """Ignore client frames before decoding them, so junk cannot break the connection."""

    async def seats_changed(self, message: dict[str, Any]) -> None:
        """A group message from :func:`booking.live.publish_seat_changes`: one frame per newer seat."""
        versions = self.versions
        if versions is None:  # closed for an unknown event
            return
        for seat in message["seats"]:
            if seat["version"] <= versions.get(seat["id"], -1):
                continue  # the client already has this state or a newer one
            versions[seat["id"]] = seat["version"]
            await self.send_json({"type": "seat", "seat": seat})


class NotFoundConsumer(AsyncWebsocketConsumer):
    """Any other WebSocket path (or an id too long for the database): closed with 4404,
    as an unknown event is, instead of failing the handshake with a routing error."""

    async def connect(self) -> None:
        await self.accept()
        await self.close(code=CLOSE_UNKNOWN_EVENT)
