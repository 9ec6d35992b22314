"""The live seat map over a WebSocket (Channels' WebsocketCommunicator against
config.asgi.application): the snapshot first, then one message per committed
change of the event's seats, whichever service made it; nothing for other
events or for a change that rolled back. Runs on whichever channel layer the
settings choose: in memory, or channels-redis when REDIS_URL is set (CI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections

from booking import consumers, live_feed
from booking.errors import SeatLocked
from booking.live import event_group_name
from booking.models import Seat
from booking.services import (
    holds_release_expired,
    seats_admin_book,
    seats_admin_cancel,
    seats_admin_release,
    seats_confirm,
    seats_lock,
    seats_unlock,
)
from config.asgi import application

from .helpers import expire_hold

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = (b"origin", b"http://testserver")
QUIET = 0.3  # seconds of silence that count as "no message"


@pytest_asyncio.fixture(autouse=True)
async def close_connections_of_the_sync_thread():
    """The services run in asgiref's sync thread; its persistent connection must not
    outlive the test (PostgreSQL would refuse to drop the test database)."""
    yield
    await sync_to_async(connections.close_all)()


def in_db(function, /, **kwargs):
    """Run a sync service (its own transaction; its push after commit) off the event loop."""
    return database_sync_to_async(function)(**kwargs)


@asynccontextmanager
async def watching(event_id: int) -> AsyncIterator[tuple[WebsocketCommunicator, dict]]:
    """A client connected to the event's live map; yields it and the snapshot it got."""
    communicator = WebsocketCommunicator(application, f"/ws/events/{event_id}/", headers=[ORIGIN])
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    try:
        yield communicator, await receive_snapshot(communicator)
    finally:
        await communicator.disconnect()


async def receive_snapshot(communicator: WebsocketCommunicator) -> dict:
    """The snapshot's parts, put together: its seats as the API's seat objects."""
    seats: list[dict] = []
    parts: list[dict] = []
    while True:
        part = await communicator.receive_json_from(timeout=10)
        assert part["type"] == "snapshot", part
        assert set(part) == {"type", "event", "now", "part", "parts", "columns", "rows"}
        assert part["part"] == len(parts)
        parts.append(part)
        first = parts[0]
        seats += [{"event": part["event"], **dict(zip(part["columns"], row, strict=True))} for row in part["rows"]]
        if part["part"] + 1 == part["parts"]:
            return {"type": "snapshot", "event": first["event"], "now": first["now"], "seats": seats}


async def next_seat(communicator: WebsocketCommunicator) -> dict:
    message = await communicator.receive_json_from(timeout=3)
    assert message["type"] == "seats", message
    assert set(message) == {"type", "seats"}
    (seat,) = message["seats"]
    return seat


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_connect_sends_the_whole_seat_map_once(event, seat_ids):
    await in_db(seats_lock, seat_ids=[seat_ids[1]], holder="alice")
    async with watching(event.id) as (communicator, snapshot):
        assert snapshot["event"] == event.id
        assert parse(snapshot["now"]).tzinfo is not None
        assert [seat["id"] for seat in snapshot["seats"]] == seat_ids
        first, second = snapshot["seats"][:2]
        assert first == {
            "id": seat_ids[0],
            "event": event.id,
            "label": "A1",
            "section": "",
            "row": "A",
            "number": 1,
            "category": "",
            "accessible": False,
            "status": "available",
            "lockExpiresAt": None,
            "version": 0,
        }
        assert (second["status"], second["version"]) == ("locked", 1)
        assert parse(second["lockExpiresAt"]) > parse(snapshot["now"])
        assert await communicator.receive_nothing(QUIET)


async def test_every_kind_of_change_is_pushed_once(event, seat_ids):
    a1, a2 = seat_ids[:2]
    async with watching(event.id) as (communicator, _):
        await in_db(seats_lock, seat_ids=[a1], holder="alice")
        locked = await next_seat(communicator)
        assert (locked["id"], locked["status"], locked["version"]) == (a1, "locked", 1)

        await in_db(seats_lock, seat_ids=[a1], holder="alice")  # renewal
        renewed = await next_seat(communicator)
        assert (renewed["status"], renewed["version"]) == ("locked", 2)
        assert parse(renewed["lockExpiresAt"]) > parse(locked["lockExpiresAt"])

        await in_db(seats_unlock, seat_ids=[a1], holder="alice")
        unlocked = await next_seat(communicator)
        assert (unlocked["status"], unlocked["lockExpiresAt"], unlocked["version"]) == ("available", None, 3)

        await in_db(seats_lock, seat_ids=[a2], holder="bob")
        assert (await next_seat(communicator))["status"] == "locked"
        await database_sync_to_async(expire_hold)(a2)  # no push: a test's shortcut, not a service
        assert await in_db(holds_release_expired, event_id=event.id) == 1  # the Celery sweep's service
        expired = await next_seat(communicator)
        assert (expired["id"], expired["status"], expired["version"]) == (a2, "available", 2)

        await in_db(seats_lock, seat_ids=[a1], holder="alice")
        assert (await next_seat(communicator))["status"] == "locked"
        await in_db(seats_confirm, seat_ids=[a1], holder="alice")
        booked = await next_seat(communicator)
        assert (booked["id"], booked["status"], booked["lockExpiresAt"], booked["version"]) == (a1, "booked", None, 5)
        assert await communicator.receive_nothing(QUIET)


async def test_a_read_that_releases_an_expired_hold_pushes_it(event, seat_ids):
    from rest_framework.test import APIClient

    async with watching(event.id) as (communicator, _):
        await in_db(seats_lock, seat_ids=[seat_ids[0]], holder="alice")
        assert (await next_seat(communicator))["status"] == "locked"
        await database_sync_to_async(expire_hold)(seat_ids[0])
        response = await database_sync_to_async(APIClient().get)(f"/api/events/{event.id}/seats")
        assert response.status_code == 200
        released = await next_seat(communicator)
        assert (released["id"], released["status"], released["version"]) == (seat_ids[0], "available", 2)


async def test_a_lock_taking_over_an_expired_hold_is_one_message(event, seat_ids):
    async with watching(event.id) as (communicator, _):
        await in_db(seats_lock, seat_ids=[seat_ids[0]], holder="alice")
        assert (await next_seat(communicator))["status"] == "locked"
        await database_sync_to_async(expire_hold)(seat_ids[0])
        await in_db(seats_lock, seat_ids=[seat_ids[0]], holder="bob")
        taken = await next_seat(communicator)
        assert (taken["status"], taken["version"]) == ("locked", 2)
        assert await communicator.receive_nothing(QUIET)


async def test_admin_actions_are_pushed(event, seat_ids):
    a1, a2 = seat_ids[:2]
    async with watching(event.id) as (communicator, _):
        await in_db(seats_lock, seat_ids=[a1], holder="alice")
        assert (await next_seat(communicator))["status"] == "locked"

        result = await in_db(seats_admin_release, seat_ids=[a1, a2])  # a2 is skipped: not held
        assert result.changed == [a1]
        released = await next_seat(communicator)
        assert (released["id"], released["status"]) == (a1, "available")

        await in_db(seats_admin_book, seat_ids=[a2], holder="walk-in")
        booked = await next_seat(communicator)
        assert (booked["id"], booked["status"]) == (a2, "booked")

        await in_db(seats_admin_cancel, seat_ids=[a2])
        cancelled = await next_seat(communicator)
        assert (cancelled["id"], cancelled["status"], cancelled["version"]) == (a2, "available", 2)
        assert await communicator.receive_nothing(QUIET)


async def test_a_change_of_another_event_is_not_sent(make_event, seat_ids, event):
    other = await database_sync_to_async(make_event)(name="Other")
    other_seat = await database_sync_to_async(lambda: other.seats.order_by("pk").first().pk)()
    async with watching(event.id) as (communicator, _):
        await in_db(seats_lock, seat_ids=[other_seat], holder="alice")
        await in_db(seats_lock, seat_ids=[seat_ids[0]], holder="alice")
        # The first message is this event's change: the other event's came before it, and was not sent.
        assert (await next_seat(communicator))["id"] == seat_ids[0]
        assert await communicator.receive_nothing(QUIET)


async def test_nothing_is_pushed_for_a_change_that_rolled_back(event, seat_ids):
    a1, a2 = seat_ids[:2]
    await in_db(seats_lock, seat_ids=[a1], holder="alice")
    async with watching(event.id) as (communicator, _):
        with pytest.raises(SeatLocked):  # all or nothing: a2 was locked, then rolled back
            await in_db(seats_lock, seat_ids=[a1, a2], holder="bob")
        assert await communicator.receive_nothing(QUIET)
        assert await database_sync_to_async(lambda: Seat.objects.get(pk=a2).status)() == "available"


async def test_a_change_during_the_snapshot_read_is_neither_lost_nor_sent_stale(event, seat_ids, monkeypatch):
    """The consumer joins the group before it reads: a change committed just
    before the read is in the snapshot and its queued push is dropped (same
    version); a change committed just after the read is pushed."""
    a1, a2 = seat_ids[:2]
    read = live_feed.event_seat_snapshot

    def racing_read(*, event_id):
        seats_lock(seat_ids=[a1], holder="alice")  # committed before the read
        snapshot = read(event_id=event_id)
        seats_lock(seat_ids=[a2], holder="bob")  # committed after the read
        return snapshot

    monkeypatch.setattr(live_feed, "event_seat_snapshot", racing_read)
    async with watching(event.id) as (communicator, snapshot):
        by_id = {seat["id"]: seat for seat in snapshot["seats"]}
        assert (by_id[a1]["status"], by_id[a1]["version"]) == ("locked", 1)
        assert by_id[a2]["status"] == "available"
        pushed = await next_seat(communicator)
        assert (pushed["id"], pushed["status"]) == (a2, "locked")
        assert await communicator.receive_nothing(QUIET)


async def test_an_older_state_than_the_client_has_is_dropped(event, seat_ids):
    """Pushes of one seat from two processes may arrive out of order; the newer version wins."""
    a1 = seat_ids[0]
    async with watching(event.id) as (communicator, snapshot):
        await in_db(seats_lock, seat_ids=[a1], holder="alice")
        newer = await next_seat(communicator)
        stale = {**snapshot["seats"][0], "status": "available", "version": 0}
        await get_channel_layer().group_send(event_group_name(event.id), {"type": "seats.changed", "seats": [stale]})
        assert await communicator.receive_nothing(QUIET)
        assert newer["version"] == 1


async def test_client_messages_but_acks_are_ignored(event, seat_ids):
    async with watching(event.id) as (communicator, _):
        await communicator.send_to(text_data="not json {")
        await communicator.send_to(text_data='{"ack": "many"}')
        await communicator.send_to(text_data='{"ack": 1}' + " " * 100)
        await communicator.send_to(bytes_data=b"\x00\xff")
        await communicator.send_json_to({"type": "lock", "seatId": seat_ids[0]})
        assert await communicator.receive_nothing(QUIET)
        await in_db(seats_lock, seat_ids=[seat_ids[0]], holder="alice")
        assert (await next_seat(communicator))["id"] == seat_ids[0]


@pytest.mark.parametrize(
    "path", ["/ws/events/999999/", "/ws/events/99999999999999999999999/", "/ws/events/abc/", "/ws/nowhere/"]
)
async def test_an_unknown_event_or_path_closes_the_socket(db, path):
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN])
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    closing = await communicator.receive_output(timeout=3)
    assert closing == {"type": "websocket.close", "code": consumers.CLOSE_UNKNOWN_EVENT}
    await communicator.wait()


@pytest.fixture
def layer_channels_opened(monkeypatch) -> list[str]:
    """The channel-layer channels sockets open from now on (a consumer with a layer opens one)."""
    layer = get_channel_layer()
    opened: list[str] = []
    new_channel = layer.new_channel

    async def recording(prefix="specific."):
        opened.append(name := await new_channel(prefix))
        return name

    monkeypatch.setattr(layer, "new_channel", recording)
    return opened


async def test_a_foreign_origin_is_refused_without_a_channel_layer_channel(event, layer_channels_opened):
    """Channels' own denial opened a layer channel (a Redis receive) per refused socket."""
    communicator = WebsocketCommunicator(
        application, f"/ws/events/{event.id}/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert not connected
    await communicator.send_input({"type": "websocket.disconnect", "code": 1006})
    await communicator.wait(timeout=2)
    assert layer_channels_opened == []


async def test_an_unknown_path_opens_no_channel_layer_channel(db, layer_channels_opened):
    communicator = WebsocketCommunicator(application, "/ws/nowhere/", headers=[ORIGIN])
    assert (await communicator.connect(timeout=5))[0]
    assert await communicator.receive_output(timeout=3) == {
        "type": "websocket.close",
        "code": consumers.CLOSE_UNKNOWN_EVENT,
    }
    await communicator.wait(timeout=2)
    assert layer_channels_opened == []


async def test_the_changes_of_one_round_leave_in_one_frame_newest_version_each(event, seat_ids, monkeypatch):
    monkeypatch.setattr(live_feed, "ROUND_SECONDS", 1.0)  # a round that surely holds all the sends below
    async with watching(event.id) as (communicator, snapshot):
        layer, group = get_channel_layer(), event_group_name(event.id)
        seats = {seat["id"]: seat for seat in snapshot["seats"]}
        for version in (1, 2, 3):  # pushes from several processes in one round, out of order too
            for seat_id in reversed(seat_ids[:5]):
                await layer.group_send(
                    group, {"type": "seats.changed", "seats": [{**seats[seat_id], "version": version}]}
                )
        await layer.group_send(group, {"type": "seats.changed", "seats": [{**seats[seat_ids[0]], "version": 2}]})
        frame = await communicator.receive_json_from(timeout=3)
        assert frame["type"] == "seats"
        assert sorted((seat["id"], seat["version"]) for seat in frame["seats"]) == [(pk, 3) for pk in seat_ids[:5]]
        assert await communicator.receive_nothing(QUIET)


async def test_a_client_that_falls_behind_is_told_to_resync_and_reconnects_to_the_right_state(
    event, seat_ids, monkeypatch
):
    monkeypatch.setattr(consumers, "MAX_UNACKED", 3)
    communicator = WebsocketCommunicator(application, f"/ws/events/{event.id}/", headers=[ORIGIN])
    assert (await communicator.connect(timeout=5))[0]
    await receive_snapshot(communicator)  # one frame, never acknowledged
    for seat_id in seat_ids[:2]:
        await in_db(seats_lock, seat_ids=[seat_id], holder="alice")
        assert (await next_seat(communicator))["id"] == seat_id
    await in_db(seats_lock, seat_ids=[seat_ids[2]], holder="alice")  # a 4th frame would exceed the bound
    assert await communicator.receive_json_from(timeout=3) == {"type": "resync"}
    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": consumers.CLOSE_RESYNC}
    await communicator.wait()
    await in_db(seats_lock, seat_ids=[seat_ids[3]], holder="alice")  # while it reconnects
    async with watching(event.id) as (_, snapshot):
        statuses = {seat["id"]: seat["status"] for seat in snapshot["seats"]}
        assert [statuses[pk] for pk in seat_ids[:5]] == ["locked"] * 4 + ["available"]


async def test_a_client_that_acknowledges_is_never_told_to_resync(event, seat_ids, monkeypatch):
    monkeypatch.setattr(consumers, "MAX_UNACKED", 3)
    async with watching(event.id) as (communicator, _):
        received = 1
        for seat_id in seat_ids[:8]:
            await communicator.send_to(text_data=f'{{"ack": {received}}}')
            await in_db(seats_lock, seat_ids=[seat_id], holder="alice")
            assert (await next_seat(communicator))["id"] == seat_id
            received += 1
        assert await communicator.receive_nothing(QUIET)


async def test_a_channel_layer_that_fails_closes_the_socket_to_try_again_later(event, monkeypatch):
    """No live changes can be promised: the client is told to reconnect later (1013), not 1011."""

    async def broken_group_add(group, channel):
        raise ConnectionError("channel layer down")

    monkeypatch.setattr(get_channel_layer(), "group_add", broken_group_add)
    communicator = WebsocketCommunicator(application, f"/ws/events/{event.id}/", headers=[ORIGIN])
    assert (await communicator.connect(timeout=5))[0]
    assert await communicator.receive_output(timeout=3) == {
        "type": "websocket.close",
        "code": consumers.CLOSE_TRY_AGAIN,
    }
    await communicator.wait()
    monkeypatch.undo()
    async with watching(event.id) as (_, snapshot):  # back: the next connect gets its snapshot
        assert snapshot["seats"]
