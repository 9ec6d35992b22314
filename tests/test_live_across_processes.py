"""Live updates across processes through channels-redis: a change made by one
server process (gunicorn, the API) or by the Celery worker (the expiry sweep)
reaches a WebSocket client connected to another process (the Procfile's live:) within a second."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from .conftest import redis_available, redis_url, require
from .processes import child_env, running_worker_and_beat, start_live_server, start_web_server

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WITHIN = 1.0  # seconds, from the change's end (the API's answer, the hold's expiry) to the client's receipt


@pytest.fixture
def shared_env(tmp_path):
    """Every child on one Redis channel layer, under a prefix of its own (runs on one Redis do not mix)."""
    require(redis_available(), f"Redis is not reachable at {redis_url()}")
    return child_env(
        REDIS_URL=redis_url(),
        CHANNEL_LAYER_PREFIX=f"test-live-{uuid.uuid4().hex[:8]}",
        CELERY_BROKER_URL=redis_url(),
        BOOKING_SWEEP_SECONDS="1",
        BOOKING_VAR_DIR=str(tmp_path),
    )


@pytest.fixture
def live_server_url(shared_env) -> Iterator[str]:
    server, base = start_live_server(env=shared_env)
    try:
        yield base
    finally:
        server.stop()


class Listener:
    """A WebSocket client on its own thread, noting when each message arrives."""

    def __init__(self, connection: ClientConnection):
        self.connection = connection
        self.messages: queue.Queue[tuple[float, dict]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for frame in self.connection:
                self.messages.put((time.monotonic(), json.loads(frame)))
        except Exception:  # closed at the end of the test
            pass

    def next(self, timeout: float) -> tuple[float, dict]:
        return self.messages.get(timeout=timeout)


@contextmanager
def listening(base: str, event_id: int) -> Iterator[Listener]:
    url = base.replace("http://", "ws://") + f"/ws/events/{event_id}/"
    with connect(url, origin=base, open_timeout=10) as connection:
        listener = Listener(connection)
        _, snapshot = listener.next(timeout=10)
        assert snapshot["type"] == "snapshot"
        yield listener


def test_a_lock_through_another_server_reaches_the_client_within_a_second(
    shared_env, live_server_url, event, seat_ids, make_user
):
    token = make_user("alice").auth_token.key
    web, web_url = start_web_server(workers=1, threads=2, env=shared_env)
    try:
        with listening(live_server_url, event.id) as listener:
            for seat_id in seat_ids[:3]:  # a few, so one lucky timing proves nothing
                response = requests.post(
                    f"{web_url}/api/lock",
                    json={"seatId": seat_id},
                    headers={"Authorization": f"Token {token}"},
                    timeout=10,
                )
                answered = time.monotonic()
                assert response.status_code == 200, response.text
                arrived, message = listener.next(timeout=5)
                assert message["type"] == "seats"
                (seat,) = message["seats"]
                assert (seat["id"], seat["status"]) == (seat_id, "locked")
                assert seat["version"] == response.json()["seats"][0]["version"]
                assert arrived - answered < WITHIN, f"the push came {arrived - answered:.3f}s after the answer"
    finally:
        web.stop()


def test_the_worker_sweep_reaches_the_client(shared_env, live_server_url, make_event):
    from booking.services import seats_lock

    event = make_event(name="Short holds", hold_seconds=1)
    seat_id = event.seats.order_by("pk").values_list("pk", flat=True).first()
    with running_worker_and_beat(env=shared_env) as worker:
        with listening(live_server_url, event.id) as listener:
            result = seats_lock(seat_ids=[seat_id], holder="alice")  # no push to the live clients from here
            expires = result.lock_expires_at.timestamp()
            # The sweep runs every second: the release comes within a sweep interval (+1 s) of the expiry.
            arrived, message = listener.next(timeout=10)
            arrived_wall = time.time() - (time.monotonic() - arrived)
            assert message["type"] == "seats"
            assert [(seat["id"], seat["status"]) for seat in message["seats"]] == [(seat_id, "available")]
            assert arrived_wall - expires < 1.0 + 1.0 + WITHIN, worker.output
            assert "released: hold by alice expired" in worker.output
