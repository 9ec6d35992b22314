"""The webhooks worker's batches (booking/services/webhooks.py, ``webhooks_deliver``): a batch costs the
database the same statements whatever its size, records each delivery's own outcome, and two
workers given the same batch at once send each message once (the lease skips what the other holds)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from booking.models import WebhookDelivery
from booking.services import sql, webhooks

from .racing import race
from .webhook_receiver import Receiver


@pytest.fixture
def receiver():
    started = Receiver()
    yield started
    started.stop()


def written(count: int, url: str) -> list[int]:
    """``count`` messages to one endpoint at ``url``: their deliveries' ids."""
    endpoint = webhooks.webhook_endpoint_create(url=url)
    for number in range(count):
        webhooks.webhooks_emit("booking.confirmed", {"reference": f"B{number}"}, endpoint_ids=[endpoint.pk])
    return list(WebhookDelivery.objects.filter(endpoint=endpoint).order_by("pk").values_list("pk", flat=True))


def references(receiver: Receiver) -> list[str]:
    import json

    return sorted(json.loads(got.body)["data"]["reference"] for got in receiver.received)


@pytest.mark.django_db
def test_a_batch_costs_the_database_the_same_statements_whatever_its_size():
    # The batch of 20 answers at two speeds: its durations differ, and still go in one UPDATE.
    receiver = Receiver(delays=[0.0] + [0.0, 0.03] * 10 + [0.0])
    try:
        one, twenty = written(1, receiver.url), written(20, receiver.url)
        counts = []
        for batch in (one, twenty):
            with CaptureQueriesContext(connection) as queries:
                assert webhooks.webhooks_deliver(batch) == ["delivered"] * len(batch)
            counts.append(sum(not q["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT")) for q in queries))
    finally:
        receiver.stop()
    # The lease with its read (on SQLite a SELECT and an UPDATE), the endpoints, the outcomes' UPDATE.
    assert counts[0] == counts[1] <= (3 if connection.vendor == "postgresql" else 4)
    assert len(receiver.received) == 21
    durations = dict(WebhookDelivery.objects.values_list("pk", "last_duration_ms"))
    # Each delivery its own duration (the slow answers go to whichever attempts arrive second, fourth…).
    assert sorted(durations[pk] >= 30 for pk in twenty) == [False] * 10 + [True] * 10
    for delivery in WebhookDelivery.objects.all():
        assert (delivery.state, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
        assert delivery.leased_until is None and delivery.next_attempt_at is None
        assert delivery.delivered_at is not None
        assert delivery.response_excerpt == "answered 200"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("width", "after_the_410"), [(1, "endpoint disabled"), (2, "endpoint disabled"), (8, "delivered")]
)
def test_each_delivery_of_a_batch_keeps_its_own_outcome(settings, width, after_the_410):
    """Attempts go ``width`` at once; a 410 disables the endpoint, so what is not yet in flight
    then fails untried (at 8 at once, the message after it was already sent)."""
    settings.BOOKING_WEBHOOK_PARALLEL_ATTEMPTS = width
    status_of = {"B1": 500, "B3": 410}
    receiver = Receiver(answer_for=lambda body: status_of.get(json.loads(body)["data"]["reference"]))
    try:
        batch = written(5, receiver.url)
        outcomes = webhooks.webhooks_deliver([batch[0], 999_999, *batch[1:], batch[0]])
    finally:
        receiver.stop()
    # The unknown id is not due; the repeated one has had its attempt.
    assert outcomes == ["delivered", "not due", "retry", "delivered", "gone", after_the_410, "delivered"]
    rows = {d.pk: d for d in WebhookDelivery.objects.all()}
    assert [(rows[pk].state, rows[pk].attempts, rows[pk].last_status_code) for pk in batch] == [
        ("delivered", 1, 200),
        ("pending", 1, 500),
        ("delivered", 1, 200),
        ("failed", 1, 410),
        ("failed", 0, None) if after_the_410 == "endpoint disabled" else ("delivered", 1, 200),
    ]
    assert rows[batch[1]].next_attempt_at is not None and rows[batch[1]].leased_until is None
    assert sorted(references(receiver)) == ["B0", "B1", "B2", "B3"] + (["B4"] if after_the_410 == "delivered" else [])


@pytest.mark.django_db
def test_a_batchs_attempts_are_in_flight_at_once_up_to_the_setting(settings):
    """Eight receivers' answers each taking 0.3 s: eight at once take about 0.3 s, one after the
    other 2.4 s; each keeps its own duration."""
    settings.BOOKING_WEBHOOK_PARALLEL_ATTEMPTS = 8
    receiver = Receiver(delays=[0.3])
    try:
        batch = written(8, receiver.url)
        started = time.monotonic()
        assert webhooks.webhooks_deliver(batch) == ["delivered"] * 8
        took = time.monotonic() - started
    finally:
        receiver.stop()
    assert took < 1.5, took
    assert all(300 <= ms < 1500 for ms in WebhookDelivery.objects.values_list("last_duration_ms", flat=True))
    assert sorted(references(receiver)) == [f"B{n}" for n in range(8)]


@pytest.mark.django_db
def test_a_slow_batch_records_what_it_delivered_as_it_goes(monkeypatch, settings):
    """A worker killed mid-batch sends again only what it delivered in its last second, and the
    admin's log is current meanwhile."""
    monkeypatch.setattr(webhooks, "RECORD_SECONDS", 0.05)
    settings.BOOKING_WEBHOOK_PARALLEL_ATTEMPTS = 1
    receiver = Receiver(delays=[0.1])
    seen: list[list[int]] = []
    attempt = webhooks._attempt_all

    def attempt_seeing_the_log(deliveries, delivered):
        seen.append(sorted(WebhookDelivery.objects.filter(state="delivered").values_list("pk", flat=True)))
        return attempt(deliveries, delivered)

    monkeypatch.setattr(webhooks, "_attempt_all", attempt_seeing_the_log)
    try:
        batch = written(3, receiver.url)
        assert webhooks.webhooks_deliver(batch) == ["delivered"] * 3
    finally:
        receiver.stop()
    assert seen == [[], batch[:1], batch[:2]]
    assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {("delivered", 1)}


@pytest.mark.django_db
def test_an_attempt_holds_its_delivery_for_the_lease_and_a_second_worker_skips_it(monkeypatch):
    receiver = Receiver()
    held: list[tuple[datetime, datetime, list[str]]] = []
    attempt = webhooks._attempt_all

    def attempt_while_another_worker_tries(deliveries, delivered):
        [delivery] = deliveries
        leased_until = WebhookDelivery.objects.get(pk=delivery.pk).leased_until
        held.append((timezone.now(), leased_until, webhooks.webhooks_deliver([delivery.pk])))
        return attempt(deliveries, delivered)

    monkeypatch.setattr(webhooks, "_attempt_all", attempt_while_another_worker_tries)
    try:
        [delivery_id] = written(1, receiver.url)
        assert webhooks.webhooks_deliver([delivery_id]) == ["delivered"]
    finally:
        receiver.stop()
    [(now, leased_until, second)] = held
    assert second == ["not due"]  # held: the second worker sends nothing
    assert abs((leased_until - now) - webhooks.lease()) < timedelta(seconds=5)
    assert len(receiver.received) == 1


def deliver_the_same_batch_twice_at_once(batch: list[int]) -> list[list[str]]:
    return race([lambda: webhooks.webhooks_deliver(batch), lambda: webhooks.webhooks_deliver(batch)])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_given_the_same_batch_send_each_message_once(receiver):
    batch = written(30, receiver.url)
    first, second = deliver_the_same_batch_twice_at_once(batch)
    assert sorted(first + second).count("delivered") == 30
    assert references(receiver) == sorted(f"B{number}" for number in range(30))
    assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {("delivered", 1)}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_control_without_the_lease_lock_both_workers_send(receiver, monkeypatch):
    """The race the lease's FOR UPDATE SKIP LOCKED closes: without it, both read the rows as free."""
    lease = sql._LEASE_WEBHOOK_DELIVERIES
    assert "FOR UPDATE OF d SKIP LOCKED" in lease
    monkeypatch.setattr(sql, "_LEASE_WEBHOOK_DELIVERIES", lease.replace("FOR UPDATE OF d SKIP LOCKED", ""))
    for _ in range(10):
        receiver.received.clear()
        WebhookDelivery.objects.all().delete()
        deliver_the_same_batch_twice_at_once(written(30, receiver.url))
        if len(receiver.received) > 30:
            break
    assert len(receiver.received) > 30, "the control never raced"


def _backlog_the_statistics_do_not_know(endpoint_id: int, count: int) -> None:
    """``count`` delivered deliveries, analysed (the statistics: nothing pending), then as many due
    ones the statistics have not seen: a receiver that was down, and autovacuum not yet round."""
    with connection.cursor() as cursor:
        for state, due in (("delivered", "NULL"), ("pending", "now() - interval '1 minute'")):
            cursor.execute(
                "WITH message AS (INSERT INTO booking_webhookmessage (msg_id, type, payload)"
                f" SELECT 'msg_backlog_{state}_' || n, 'booking.confirmed', '{{}}' FROM generate_series(1, %s) AS n"
                " RETURNING id)"
                " INSERT INTO booking_webhookdelivery (message_id, endpoint_id, state, attempts, next_attempt_at,"
                " last_error, response_excerpt)"
                f" SELECT id, %s, '{state}', 0, {due}, '', '' FROM message",
                [count, endpoint_id],
            )
            if state == "delivered":
                cursor.execute("ANALYZE booking_webhookdelivery")


def _delivery_scans(statement: str, params: dict) -> list[str]:
    """How the plan of ``statement`` reads the deliveries table: the index of each of its scans."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        [plan] = cursor.fetchone()  # psycopg reads the json
    nodes, scans = [plan[0]["Plan"]], []
    while nodes:
        node = nodes.pop()
        if node.get("Relation Name") == "booking_webhookdelivery" and node["Node Type"] != "ModifyTable":
            scans.append(node.get("Index Name", node["Node Type"]))
        nodes.extend(node.get("Plans", []))
    return scans


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_lease_reads_its_batch_by_id_whatever_the_backlog(receiver):
    """A backlog the planner's statistics predate must not make every lease walk it: the lease
    reads its batch by primary key, and leaves the backlog to its own batches."""
    backlogged = webhooks.webhook_endpoint_create(url="http://127.0.0.1:9/backlogged")
    _backlog_the_statistics_do_not_know(backlogged.pk, 3000)
    batch = written(3, receiver.url)
    with CaptureQueriesContext(connection) as queries:
        assert webhooks.webhooks_deliver(batch) == ["delivered"] * 3
    assert sum("FOR UPDATE OF d SKIP LOCKED" in q["sql"] for q in queries) == 1  # the lease ran
    assert references(receiver) == ["B0", "B1", "B2"]
    assert WebhookDelivery.objects.filter(endpoint=backlogged, state="pending").count() == 3000
    lease, params = sql._LEASE_WEBHOOK_DELIVERIES, {"ids": batch, "lease": webhooks.lease().total_seconds()}
    with transaction.atomic():
        # The locked read and the UPDATE both find the rows by primary key.
        assert _delivery_scans(lease, params) == ["booking_webhookdelivery_pkey"] * 2
        # Control: with the state in the locked read's WHERE, the planner takes the due index.
        with_state = lease.replace("WHERE d.id = ANY", "WHERE d.state = 'pending' AND d.id = ANY", 1)
        assert with_state != lease
        assert "webhookdelivery_due_idx" in _delivery_scans(with_state, params)
