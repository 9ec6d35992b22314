"""How a push leaves a process without an event loop (the WSGI web server's
threads, a Celery worker): through the process's one publisher thread, on one
Redis connection for every push, in order, without the caller waiting for
Redis; and never at all with an in-memory layer that nobody in the process can
be listening to."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
import redis
from channels.layers import channel_layers, get_channel_layer
from django.test import override_settings

from booking import live

from .conftest import redis_available, redis_url, require


def seat(seat_id: int, version: int, event: int = 7) -> dict:
    return {"id": seat_id, "event": event, "label": f"A{seat_id}", "status": "locked", "version": version}


@pytest.fixture
def redis_layer():
    require(redis_available(), f"Redis is not reachable at {redis_url()}")
    prefix = f"test-publisher-{uuid.uuid4().hex[:8]}"
    config = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [redis_url()], "prefix": prefix, "capacity": 1000},
        }
    }
    with override_settings(CHANNEL_LAYERS=config):
        channel_layers.backends.clear()
        yield get_channel_layer()
    channel_layers.backends.clear()


def connections_received(client: redis.Redis) -> int:
    return int(client.info("stats")["total_connections_received"])


def receive_seats(layer, channel: str, count: int) -> tuple[list[dict], list[dict]]:
    """The messages that carry the first ``count`` seats sent to ``channel``, and those seats."""

    async def receive() -> tuple[list[dict], list[dict]]:
        messages, seats = [], []
        while len(seats) < count:
            messages.append(await asyncio.wait_for(layer.receive(channel), 5))
            seats.extend(messages[-1]["seats"])
        return messages, seats

    return asyncio.run(receive())


@pytest.mark.redis
def test_pushes_from_threads_without_a_loop_share_one_connection_and_arrive_in_order(redis_layer):
    """50 pushes from two threads: in order, on one connection; those that pile up leave together."""
    channel = asyncio.run(redis_layer.new_channel())
    asyncio.run(redis_layer.group_add(live.event_group_name(7), channel))
    counter = redis.Redis.from_url(redis_url())
    before = connections_received(counter)

    def push_from_a_request_thread(first: int) -> None:
        for version in range(first, first + 25):
            live.publish_seat_changes([seat(1, version)])

    for first in (1, 26):  # two request threads, one after the other
        thread = threading.Thread(target=push_from_a_request_thread, args=(first,))
        thread.start()
        thread.join()
    assert live.flush(5)

    messages, seats = receive_seats(redis_layer, channel, 50)
    assert [s["version"] for s in seats] == list(range(1, 51))
    assert all(m["type"] == "seats.changed" for m in messages)
    assert 1 <= len(messages) <= 50
    # The publisher's one connection and one for the receiving loop above; an
    # event loop per push, or sends in parallel, would have opened up to 50.
    assert connections_received(counter) - before <= 2


@pytest.mark.redis
def test_one_message_per_event_carries_all_its_seats(redis_layer):
    channel_7 = asyncio.run(redis_layer.new_channel())
    channel_8 = asyncio.run(redis_layer.new_channel())
    asyncio.run(redis_layer.group_add(live.event_group_name(7), channel_7))
    asyncio.run(redis_layer.group_add(live.event_group_name(8), channel_8))

    live.publish_seat_changes([seat(1, 1), seat(2, 1, event=8), seat(3, 1)])
    assert live.flush(5)

    [to_7], _ = receive_seats(redis_layer, channel_7, 1)
    [to_8], _ = receive_seats(redis_layer, channel_8, 1)
    assert [s["id"] for s in to_7["seats"]] == [1, 3]
    assert [s["id"] for s in to_8["seats"]] == [2]


@pytest.mark.redis
def test_a_failing_push_is_logged_and_never_raises_into_the_caller(redis_layer, monkeypatch, caplog):
    async def broken_group_send(group, message):
        raise ConnectionError("redis went away")

    monkeypatch.setattr(redis_layer, "group_send", broken_group_send)
    live.publish_seat_changes([seat(1, 1)])
    assert live.flush(5)
    # Counted and logged by the channel layer's breaker (booking/dependencies.py), which then skips it.
    assert "channel_layer unavailable (ConnectionError: redis went away)" in caplog.text


def test_an_in_memory_layer_without_a_loop_sends_nothing_and_starts_no_thread(monkeypatch):
    submitted = []
    monkeypatch.setattr(live.publisher, "submit", lambda layer, changes, *started: submitted.append(changes))
    with override_settings(CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}):
        channel_layers.backends.clear()
        live.publish_seat_changes([seat(1, 1)])
    channel_layers.backends.clear()
    assert submitted == []


def test_the_layers_reads_outlast_its_blocking_pop():
    """redis-py gives up a read after 5 s by default, channels-redis blocks a pop for 5 s: a message
    Redis popped as the read gave up was lost (a round of changes never reached the watchers)."""
    from channels_redis.core import RedisChannelLayer
    from django.conf import settings

    assert settings.CHANNEL_LAYER_READ_TIMEOUT > RedisChannelLayer.brpop_timeout
    layer = get_channel_layer()
    if isinstance(layer, RedisChannelLayer):  # CI's PostgreSQL run: the layer the processes use
        assert all(host["socket_timeout"] == settings.CHANNEL_LAYER_READ_TIMEOUT for host in layer.hosts)
