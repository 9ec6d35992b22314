"""The live process's tasks stop when told to, so a feed's last watcher leaving never hangs the feed
(its lock, and every later watcher of the event, with it).

Python 3.11's ``asyncio.wait_for`` loses a cancel that arrives as its awaitable completes, and
redis-py sends each command through it: a cancelled channel-layer receive could go on receiving
(CI hung 600 s closing a test's event loop on one). booking/aio.py's ``cancel_and_wait`` cancels
again until the task has ended; the control shows the plain cancel losing against real Redis."""

from __future__ import annotations

import asyncio
import random

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from booking import live_feed
from booking.aio import cancel_and_wait
from booking.live_feed import EventFeed

from .conftest import redis_available, redis_url, require

pytestmark = pytest.mark.asyncio

#: Receives cancelled in the control: a lost cancel shows within a few dozen on this machine.
CONTROL_TRIES = 1000
#: Receives cancelled and awaited with cancel_and_wait.
TRIES = 200


async def swallows_its_first_cancel() -> None:
    """What a receive caught in wait_for's race does: one cancel lost, then blocked again."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass
    await asyncio.sleep(3600)


async def test_cancel_and_wait_ends_a_task_that_lost_its_cancel():
    control = asyncio.ensure_future(swallows_its_first_cancel())
    await asyncio.sleep(0)
    control.cancel()
    _, pending = await asyncio.wait([control], timeout=0.5)
    assert pending == {control}  # a single cancel leaves it running

    await cancel_and_wait(control)
    assert control.cancelled()


class LayerWhoseReceiveLosesACancel:
    """A channel layer whose receive loses its first cancel."""

    def __init__(self) -> None:
        self.discarded: list[tuple[str, str]] = []

    async def new_channel(self, prefix: str = "specific.") -> str:
        return prefix + "1"

    async def group_add(self, group: str, channel: str) -> None:
        pass

    async def group_discard(self, group: str, channel: str) -> None:
        self.discarded.append((group, channel))

    async def receive(self, channel: str) -> dict:
        await swallows_its_first_cancel()
        raise AssertionError("unreachable")


class Watcher:
    def wake(self) -> None:
        pass


async def test_the_last_watcher_leaving_ends_the_feed_even_when_its_receive_lost_a_cancel(monkeypatch):
    layer = LayerWhoseReceiveLosesACancel()
    monkeypatch.setattr(live_feed, "get_channel_layer", lambda: layer)
    feed, watcher = EventFeed(7), Watcher()
    await feed.join(watcher)
    tasks = list(feed._tasks)
    await asyncio.sleep(0.05)  # the receive is waiting

    leaving = asyncio.ensure_future(feed.leave(watcher))
    done, _ = await asyncio.wait([leaving], timeout=1)  # a lost cancel is sent again within 0.2 s
    if not done:
        await cancel_and_wait(leaving, *tasks)
        pytest.fail("the last watcher's leave hung on a receive that lost its cancel")
    assert leaving.result() is True
    assert all(task.done() for task in tasks)
    assert layer.discarded == [(feed.group, "feed.1")]
    # The feed takes a new watcher as usual.
    await asyncio.wait_for(feed.join(watcher), timeout=3)
    assert await asyncio.wait_for(feed.leave(watcher), timeout=3) is True


def settings_layer() -> RedisChannelLayer:
    """A channels-redis layer configured as the settings configure the live process's."""
    require(redis_available(), f"Redis is not reachable at {redis_url()}")
    config = dict(settings.CHANNEL_LAYERS["default"].get("CONFIG", {}))
    host = {"address": redis_url(), "socket_timeout": settings.CHANNEL_LAYER_READ_TIMEOUT}
    if config.get("hosts"):
        host = {**config["hosts"][0], "address": redis_url()}
    return RedisChannelLayer(hosts=[host], prefix="test-cancel")


async def cancel_a_receive(layer: RedisChannelLayer) -> asyncio.Task:
    receive = asyncio.ensure_future(layer.receive(await layer.new_channel()))
    await asyncio.sleep(random.uniform(0, 0.02))  # anywhere in its commands' sends and reads
    return receive


async def test_control_a_single_cancel_of_a_real_layer_receive_can_be_lost():
    layer = settings_layer()
    lost = None
    try:
        for _ in range(CONTROL_TRIES):
            receive = await cancel_a_receive(layer)
            receive.cancel()
            _, pending = await asyncio.wait([receive], timeout=0.5)
            if pending:
                lost = receive
                break
        assert lost is not None, f"no cancel of {CONTROL_TRIES} was lost: the race did not show"
        await cancel_and_wait(lost)  # and a second cancel ends it
        assert lost.cancelled()
    finally:
        await layer.flush()


async def test_cancel_and_wait_ends_every_real_layer_receive():
    layer = settings_layer()
    try:
        for _ in range(TRIES):
            receive = await cancel_a_receive(layer)
            await asyncio.wait_for(cancel_and_wait(receive), timeout=3)
            assert receive.done()
    finally:
        await layer.flush()
