"""A push the channel layer lost is not forgotten: every watcher of its event resyncs.

A process whose push failed (or was skipped while the layer's breaker was open) tells the event's
group ``seats.lost`` once the layer answers again, on its next push or, with none, on the
publisher's retry (booking/live.py); a feed whose own receive failed joins its group again and
resyncs its watchers (booking/live_feed.py). A watcher that resyncs gets ``{"type": "resync"}``
and reconnects to a fresh snapshot."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections

from booking import consumers, dependencies, live, live_feed
from booking.live import event_group_name, lost_groups
from booking.live_feed import EventFeed
from booking.services import seats_lock
from config.asgi import application

from .test_live import ORIGIN, in_db, receive_snapshot

RETRY_SECONDS = 0.3


class FlakyLayer:
    """A channel layer whose group sends fail while ``down``; it records what it was sent."""

    def __init__(self) -> None:
        self.down = True
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, message: dict) -> None:
        if self.down:
            raise ConnectionError("the layer is down")
        self.sent.append((group, message))


@pytest.fixture
def quick_retries(settings):
    settings.DEPENDENCY_RETRY_SECONDS = RETRY_SECONDS


def seats_of(event_id: int) -> list[dict]:
    return [{"id": 1, "event": event_id, "status": "locked", "version": 1}]


def test_a_push_the_layer_lost_makes_its_group_resync_with_the_next_push(quick_retries):
    layer = FlakyLayer()
    asyncio.run(live._send(layer, [(event_group_name(1), seats_of(1)), (event_group_name(2), seats_of(2))]))
    assert layer.sent == [] and dependencies.channel_layer.state == "down"
    asyncio.run(live._send(layer, [(event_group_name(3), seats_of(3))]))  # skipped: the breaker is open
    assert layer.sent == []

    layer.down = False
    time.sleep(RETRY_SECONDS + 0.05)
    asyncio.run(live._send(layer, [(event_group_name(1), seats_of(1))]))
    assert layer.sent == [
        (event_group_name(1), {"type": "seats.changed", "seats": seats_of(1)}),
        (event_group_name(1), {"type": "seats.lost"}),
        (event_group_name(2), {"type": "seats.lost"}),
        (event_group_name(3), {"type": "seats.lost"}),
    ]
    assert not lost_groups  # told once
    asyncio.run(live._send(layer, [(event_group_name(2), seats_of(2))]))
    assert layer.sent[-1] == (event_group_name(2), {"type": "seats.changed", "seats": seats_of(2)})


def test_with_no_next_push_the_publisher_tells_the_lost_group_itself(quick_retries, monkeypatch):
    layer = FlakyLayer()
    monkeypatch.setattr(live, "get_channel_layer", lambda: layer)
    live.publisher.submit(layer, [(event_group_name(5), seats_of(5))])
    assert live.flush(3.0)
    assert layer.sent == [] and dependencies.channel_layer.state == "down"

    layer.down = False  # and nothing else is pushed
    deadline = time.monotonic() + 10 * RETRY_SECONDS
    while not layer.sent and time.monotonic() < deadline:
        time.sleep(0.02)
    assert layer.sent == [(event_group_name(5), {"type": "seats.lost"})]
    assert dependencies.channel_layer.state == "ok"


async def watch(event_id: int) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/events/{event_id}/", headers=[ORIGIN])
    assert (await communicator.connect(timeout=5))[0]
    await receive_snapshot(communicator)
    return communicator


async def assert_told_to_resync(communicator: WebsocketCommunicator) -> None:
    assert await communicator.receive_json_from(timeout=3) == {"type": "resync"}
    assert await communicator.receive_output(timeout=3) == {"type": "websocket.close", "code": consumers.CLOSE_RESYNC}


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_every_watcher_of_an_event_told_seats_lost_resyncs_to_the_right_state(event, seat_ids):
    try:
        watchers = [await watch(event.id) for _ in range(3)]
        await in_db(seats_lock, seat_ids=[seat_ids[0]], holder="alice")  # a change whose push was lost…
        for communicator in watchers:
            assert (await communicator.receive_json_from(timeout=3))["type"] == "seats"
        await get_channel_layer().group_send(event_group_name(event.id), {"type": "seats.lost"})
        for communicator in watchers:
            await assert_told_to_resync(communicator)
        # …and the snapshot it reconnects to has every change.
        again = WebsocketCommunicator(application, f"/ws/events/{event.id}/", headers=[ORIGIN])
        assert (await again.connect(timeout=5))[0]
        snapshot = await receive_snapshot(again)
        assert {seat["id"]: seat["status"] for seat in snapshot["seats"]}[seat_ids[0]] == "locked"
        await again.disconnect()
    finally:
        await sync_to_async(connections.close_all)()


class LayerWhoseReceiveFailsOnce:
    """A channel layer whose first receive fails (Redis restarted: it forgot the feed's group)."""

    def __init__(self) -> None:
        self.joined: list[tuple[str, str]] = []
        self.receives = 0

    async def new_channel(self, prefix: str = "specific.") -> str:
        return prefix + "1"

    async def group_add(self, group: str, channel: str) -> None:
        self.joined.append((group, channel))

    async def group_discard(self, group: str, channel: str) -> None:
        pass

    async def receive(self, channel: str) -> dict:
        self.receives += 1
        if self.receives == 1:
            raise ConnectionError("Redis went away")
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


class Watcher:
    def __init__(self) -> None:
        self.resyncs = 0

    def wake(self) -> None:
        pass

    def resync(self) -> None:
        self.resyncs += 1


@pytest.mark.asyncio
async def test_a_feed_whose_receive_failed_joins_its_group_again_and_resyncs_its_watchers(monkeypatch):
    layer = LayerWhoseReceiveFailsOnce()
    monkeypatch.setattr(live_feed, "get_channel_layer", lambda: layer)
    monkeypatch.setattr(live_feed, "REJOIN_SECONDS", 0.05)
    feed, watchers = EventFeed(9), [Watcher(), Watcher()]
    for watcher in watchers:
        await feed.join(watcher)
    deadline = asyncio.get_running_loop().time() + 3
    while any(watcher.resyncs == 0 for watcher in watchers) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    try:
        assert [watcher.resyncs for watcher in watchers] == [1, 1]
        assert layer.joined == [(feed.group, "feed.1"), (feed.group, "feed.1")]  # joined, then again
        assert layer.receives == 2  # and it receives again
    finally:
        for watcher in watchers:
            await feed.leave(watcher)
