"""Webhooks end to end: the production web server, a real Celery worker and beat on Redis, a real
receiver on 127.0.0.1. Bookings made over HTTP reach the receiver, signed, retried, never lost."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
import requests
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from booking.models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from booking.services.webhooks import webhook_endpoint_create

from .conftest import redis_available, redis_url, require
from .processes import BIN, Process, child_env, start_web_server
from .webhook_receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

BROKER_DB = 14  # a Redis database of this test module's own, emptied before each test


@pytest.fixture
def environment(tmp_path):
    require(redis_available(), f"Redis is not reachable at {redis_url()}")
    broker = redis_url().rsplit("/", 1)[0] + f"/{BROKER_DB}"
    redis.Redis.from_url(broker).flushdb()
    return child_env(
        CELERY_BROKER_URL=broker,
        BOOKING_VAR_DIR=str(tmp_path / "var"),
        BOOKING_WEBHOOK_POLL_SECONDS="1",
        BOOKING_WEBHOOK_RETRY_SCHEDULE="1,1,1,1,1,1,1",
        BOOKING_WEBHOOK_TIMEOUT_SECONDS="3",
        BOOKING_WEBHOOK_ENDPOINTS_CACHE_SECONDS="0",
        BOOKING_SWEEP_SECONDS="60",
    )


def start_worker(env) -> Process:
    worker = Process(
        [str(BIN / "celery"), "-A", "config", "worker", "-Q", "celery,webhooks", "--pool=threads", "--concurrency=4"]
        + ["--loglevel=INFO", "--without-gossip", "--without-mingle", "-n", f"webhooks-{time.monotonic_ns()}@%h"],
        env=env,
    )
    worker.wait_for_output(r"@\S+ ready\.", timeout=30)
    return worker


@contextmanager
def running(env) -> Iterator[dict]:
    """The web server, a worker for both queues and beat; yields them (the worker can be replaced)."""
    beat = Process([str(BIN / "celery"), "-A", "config", "beat", "--loglevel=INFO"], env=env)
    parts = {"worker": start_worker(env), "beat": beat}
    server, base = start_web_server(workers=1, threads=4, env=env)
    parts.update(server=server, base=base)
    try:
        beat.wait_for_output(r"beat: Starting", timeout=30)
        yield parts
    finally:
        for name in ("server", "beat", "worker"):
            parts[name].stop()


def booker(make_user, name: str, base: str):
    session = requests.Session()
    session.headers["Authorization"] = f"Token {make_user(name).auth_token.key}"

    def book(seat_ids: list[int]) -> dict:
        assert session.post(f"{base}/api/lock", json={"seatIds": seat_ids}, timeout=10).status_code == 200
        confirm = session.post(f"{base}/api/confirm", json={"seatIds": seat_ids}, timeout=10)
        assert confirm.status_code == 200, confirm.text
        return confirm.json()["booking"]

    return book


def of_type(received, event_type: str):
    return [
        got for got in received if got.headers.get("webhook-id") and b'"type":"%s"' % event_type.encode() in got.body
    ]


def test_a_booking_arrives_within_5_seconds_signed(environment, make_user, seat_ids):
    receiver = Receiver()
    endpoint = webhook_endpoint_create(url=receiver.url)
    try:
        with running(environment) as parts:
            book = booker(make_user, "alice", parts["base"])
            started = time.monotonic()
            booking = book(seat_ids[:2])
            while not of_type(receiver.received, "booking.confirmed"):
                assert time.monotonic() - started < 5, receiver.received
                time.sleep(0.02)
    finally:
        receiver.stop()
    (got,) = of_type(receiver.received, "booking.confirmed")
    message = Webhook(endpoint.secret).verify(got.body, got.headers)
    assert message["data"]["reference"] == booking["reference"]
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint.secret).verify(got.body.replace(booking["reference"].encode(), b"XXXXXXXX"), got.headers)
    assert of_type(receiver.received, "hold.created")  # the lock's message too


def test_500_twice_then_200_arrives_on_the_third_try_with_the_same_id(environment, make_user, seat_ids):
    receiver = Receiver(answers=[500, 500, 200])
    webhook_endpoint_create(url=receiver.url, event_types=["booking.confirmed"])
    try:
        with running(environment) as parts:
            booker(make_user, "alice", parts["base"])(seat_ids[:1])
            arrived = receiver.wait_for(3, timeout=20)
    finally:
        receiver.stop()
    assert len({got.headers["webhook-id"] for got in arrived}) == 1
    delivery = WebhookDelivery.objects.get()
    assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 3, 200)


def test_a_receiver_down_during_100_bookings_gets_all_100_after_it_comes_back(environment, make_user, make_event):
    seats = list(
        make_event(rows=("A", "B", "C", "D"), seats_per_row=25).seats.order_by("pk").values_list("pk", flat=True)
    )
    receiver = Receiver()
    receiver.stop()  # down
    webhook_endpoint_create(url=receiver.url, event_types=["booking.confirmed"])
    try:
        with running(environment) as parts:
            books = [booker(make_user, f"fan{n}", parts["base"]) for n in range(4)]
            references: list[str] = []
            lock = threading.Lock()

            def run(n: int) -> None:
                for seat in seats[n::4]:
                    reference = books[n]([seat])["reference"]
                    with lock:
                        references.append(reference)

            threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
            assert len(references) == 100
            assert WebhookMessage.objects.count() == 100
            time.sleep(1.5)  # some attempts fail against the dead receiver
            assert WebhookDelivery.objects.exclude(attempts=0).exists()
            receiver.start()
            deadline = time.monotonic() + 45
            while len({got.headers["webhook-id"] for got in receiver.received}) < 100:
                assert time.monotonic() < deadline, len(receiver.received)
                time.sleep(0.1)
    finally:
        receiver.stop()
    import json

    delivered = {json.loads(got.body)["data"]["reference"] for got in receiver.received}
    assert delivered == set(references)  # every booking, at least once
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"delivered"}


def test_410_disables_the_endpoint(environment, make_user, seat_ids):
    receiver = Receiver(answers=[410])
    endpoint = webhook_endpoint_create(url=receiver.url)
    try:
        with running(environment) as parts:
            booker(make_user, "alice", parts["base"])(seat_ids[:1])
            deadline = time.monotonic() + 10
            while WebhookEndpoint.objects.get(pk=endpoint.pk).active:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        receiver.stop()
    assert "410" in WebhookEndpoint.objects.get(pk=endpoint.pk).disabled_reason


def test_a_refused_change_rolls_back_and_sends_nothing(environment, make_user, seat_ids):
    receiver = Receiver()
    webhook_endpoint_create(url=receiver.url)
    try:
        with running(environment) as parts:
            booker(make_user, "alice", parts["base"])(seat_ids[:1])
            receiver.wait_for(2, timeout=5)  # alice's hold and booking
            bob = requests.Session()
            bob.headers["Authorization"] = f"Token {make_user('bob').auth_token.key}"
            # Bob's lock of a free seat and alice's booked one: all or none, so nothing.
            refused = bob.post(f"{parts['base']}/api/lock", json={"seatIds": seat_ids[:2]}, timeout=10)
            assert refused.status_code == 409
            time.sleep(2.5)  # more than a beat round and a retry step
    finally:
        receiver.stop()
    assert len(receiver.received) == 2
    assert WebhookMessage.objects.count() == 2


def test_a_worker_killed_mid_delivery_delivers_after_a_restart(environment, make_user, seat_ids):
    receiver = Receiver(delays=[2.0, 0.0])  # the first attempt is still in flight when the worker dies
    webhook_endpoint_create(url=receiver.url, event_types=["booking.confirmed"])
    try:
        with running(environment) as parts:
            booker(make_user, "alice", parts["base"])(seat_ids[:2])
            receiver.wait_for(1, timeout=10)  # the attempt reached the receiver ...
            parts["worker"].signal_group(signal.SIGKILL)  # ... and its worker dies before the answer
            assert parts["worker"].wait(timeout=10) == -signal.SIGKILL
            delivery = WebhookDelivery.objects.get()
            assert delivery.state == "pending" and delivery.leased_until is not None
            parts["worker"] = start_worker(environment)
            deadline = time.monotonic() + 30
            while WebhookDelivery.objects.get().state != "delivered":
                assert time.monotonic() < deadline, WebhookDelivery.objects.values().get()
                time.sleep(0.1)
    finally:
        receiver.stop()
    assert len(receiver.received) >= 2  # at least once: the killed attempt's message came again
    assert len({got.headers["webhook-id"] for got in receiver.received}) == 1


def test_a_slow_receiver_slows_neither_the_booking_nor_another_endpoint(environment, make_user, seat_ids):
    slow, fast = Receiver(delays=[2.5]), Receiver()
    webhook_endpoint_create(url=slow.url, event_types=["booking.confirmed"])
    webhook_endpoint_create(url=fast.url, event_types=["booking.confirmed"])
    try:
        with running(environment) as parts:
            book = booker(make_user, "alice", parts["base"])
            book(seat_ids[:1])  # warm the server's connections
            slow.wait_for(1, timeout=10)
            started = time.monotonic()
            book(seat_ids[1:2])
            booked_in = time.monotonic() - started
            fast.wait_for(2, timeout=5)
            fast_in = time.monotonic() - started
            slow.wait_for(2, timeout=10)
    finally:
        slow.stop()
        fast.stop()
    assert booked_in < 1.0, booked_in  # the booking waited for no receiver
    assert fast_in < 2.0, fast_in  # the fast endpoint's message did not wait behind the slow one's
