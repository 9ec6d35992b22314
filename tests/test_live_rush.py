"""The live map under a sale rush, against the real ASGI server (uvicorn, as Procfile's live: line
runs it) on the Redis channel layer: a 100 000-seat snapshot arrives in parts under the server's
message size limit; a burst of 1 000 connects all succeed, the event's group holds one member
for the whole process (the feed) whatever the number of watchers, and none once they are gone."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone
from websockets.asyncio.client import connect as ws_connect_async
from websockets.sync.client import connect as ws_connect

from booking.live_feed import SNAPSHOT_ROWS
from booking.services import event_create_with_seats, seats_lock

from .conftest import redis_available, redis_url, require
from .processes import child_env, start_live_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

#: The live: line's limit on one WebSocket message (--ws-max-size).
MESSAGE_LIMIT = 1024 * 1024
WATCHERS = int(__import__("os").environ.get("RUSH_WATCHERS", "1000"))


@pytest.fixture
def prefix():
    """The test process's own layer prefix: its pushes (a lock in this process) reach the server."""
    from django.conf import settings

    require(redis_available(), f"Redis is not reachable at {redis_url()}")
    return settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]


@pytest.fixture
def live(prefix, tmp_path):
    require(redis_available(), f"Redis is not reachable at {redis_url()}")
    server, base = start_live_server(
        env=child_env(REDIS_URL=redis_url(), CHANNEL_LAYER_PREFIX=prefix, BOOKING_VAR_DIR=str(tmp_path))
    )
    try:
        yield base.replace("http://", "ws://"), base, server
    finally:
        server.stop()


def group_members(prefix: str, event_id: int) -> int:
    """Members of the event's group in channels-redis' core layer (a sorted set per group)."""
    return redis.Redis.from_url(redis_url()).zcard(f"{prefix}:group:event-{event_id}")


def stadium():
    """An event of 100 000 seats (200 rows of 500): a 5.5 MB snapshot."""
    return event_create_with_seats(
        name="Stadium",
        starts_at=timezone.now() + timedelta(days=7),
        rows=[f"R{n}" for n in range(200)],
        seats_per_row=500,
    )


def test_a_100000_seat_snapshot_reaches_the_client_in_parts(live, db):
    ws_base, origin, server = live
    event = stadium()
    held = list(event.seats.order_by("pk").values_list("pk", flat=True)[:3])
    seats_lock(seat_ids=held, holder="alice")
    with ws_connect(f"{ws_base}/ws/events/{event.pk}/", origin=origin, open_timeout=10, max_size=None) as socket:
        rows, sizes, parts = [], [], None
        started = time.monotonic()
        while parts is None or len(sizes) < parts:
            text = socket.recv(timeout=60)
            frame = json.loads(text)
            assert frame["type"] == "snapshot" and frame["part"] == len(sizes)
            parts = frame["parts"]
            sizes.append(len(text.encode()))
            columns = frame["columns"]
            rows += frame["rows"]
        took = time.monotonic() - started
    assert len(rows) == 100_000 and parts == -(-100_000 // SNAPSHOT_ROWS)
    assert max(sizes) < MESSAGE_LIMIT
    seats = [dict(zip(columns, row, strict=True)) for row in rows]
    assert len({seat["id"] for seat in seats}) == 100_000
    assert [seat["status"] for seat in seats if seat["id"] in held] == ["locked"] * 3
    assert took < 30, f"the snapshot took {took:.1f} s"


def test_a_client_that_stops_reading_keeps_no_other_waiting(live, db):
    """Each socket sends from a task of its own: one whose buffers are full (its 5.5 MB snapshot
    unread) leaves the process free to serve another client its snapshot and then a change."""
    ws_base, origin, server = live
    event = stadium()
    url = f"{ws_base}/ws/events/{event.pk}/"
    first = event.seats.order_by("pk").values_list("pk", flat=True)[0]
    with ws_connect(url, origin=origin, open_timeout=10, max_size=None) as stuck:
        stuck.recv(timeout=30)  # its first part, then it reads nothing more
        with ws_connect(url, origin=origin, open_timeout=10, max_size=None) as reader:
            parts = None
            received = 0
            while parts is None or received < parts:
                frame = json.loads(reader.recv(timeout=30))
                assert frame["type"] == "snapshot"
                parts, received = frame["parts"], received + 1
            locked_at = time.monotonic()
            seats_lock(seat_ids=[first], holder="alice")
            frame = json.loads(reader.recv(timeout=5))
            assert frame["type"] == "seats" and [s["id"] for s in frame["seats"]] == [first]
            assert time.monotonic() - locked_at < 2, "the change waited on the stuck client"


def test_a_burst_of_1000_connects_succeeds_and_leaves_no_group_member(live, prefix, event, seat_ids):
    ws_base, origin, server = live
    url = f"{ws_base}/ws/events/{event.pk}/"
    redis.Redis.from_url(redis_url()).delete(f"{prefix}:group:event-{event.pk}")  # an earlier run's, of this id

    async def watch(opened: asyncio.Event, connected: list, frames: dict, index: int):
        async with ws_connect_async(url, origin=origin, open_timeout=60, max_size=None) as socket:
            snapshot = json.loads(await asyncio.wait_for(socket.recv(), 60))
            assert snapshot["type"] == "snapshot"
            connected.append(index)
            await opened.wait()
            frames[index] = json.loads(await asyncio.wait_for(socket.recv(), 30))

    async def burst():
        opened, connected, frames = asyncio.Event(), [], {}
        watchers = [asyncio.create_task(watch(opened, connected, frames, n)) for n in range(WATCHERS)]
        started = time.monotonic()
        while len(connected) < WATCHERS:
            assert time.monotonic() - started < 120, f"{len(connected)} connected after 120 s; {server.output[-2000:]}"
            failed = [task for task in watchers if task.done() and task.exception()]
            assert not failed, f"{len(failed)} failed: {failed[0].exception()!r}; {server.output[-3000:]}"
            await asyncio.sleep(0.1)
        members_while_watching = group_members(prefix, event.pk)
        opened.set()
        await asyncio.to_thread(seats_lock, seat_ids=[seat_ids[0]], holder="alice")
        await asyncio.gather(*watchers)
        return members_while_watching, frames

    members_while_watching, frames = asyncio.run(asyncio.wait_for(burst(), 180))
    # One member for the live process (its feed of the event), not one per watcher.
    assert members_while_watching == 1
    assert len(frames) == WATCHERS
    assert all(
        frame["type"] == "seats" and [seat["id"] for seat in frame["seats"]] == [seat_ids[0]]
        for frame in frames.values()
    )
    deadline = time.monotonic() + 5
    while group_members(prefix, event.pk) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(prefix, event.pk) == 0
