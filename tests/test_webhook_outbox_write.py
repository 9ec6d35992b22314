"""The outbox's write (booking/services/webhooks.py ``_write``): on PostgreSQL the messages and
their deliveries go in one statement (booking/services/sql.py), and the rows it writes are the
rows the ORM's two INSERTs write (the path SQLite takes), column for column."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from booking.models import WebhookDelivery, WebhookMessage
from booking.services import webhooks

HOLD = {"holder": "alice", "event": 1, "seats": [{"id": 7, "label": "A7", "note": 'say "hi" \\ there'}]}
BOOKING = {"reference": "K7", "seats": [7, 8], "total": None}


AT = timezone.now() - timedelta(seconds=3)


def write(insert, endpoint_ids: list[int]) -> list[WebhookMessage]:
    """Two messages to ``endpoint_ids`` through one of the two ways of inserting them."""
    messages = [
        WebhookMessage(msg_id=webhooks.new_msg_id(), type=t, payload={"type": t, "data": data})
        for t, data in (("hold.created", HOLD), ("booking.confirmed", BOOKING))
    ]
    with transaction.atomic():
        ids = insert(messages, {"hold.created": endpoint_ids, "booking.confirmed": endpoint_ids[:1]}, AT)
    assert sorted(ids) == sorted(WebhookDelivery.objects.filter(message__in=messages).values_list("pk", "endpoint_id"))
    return messages


def rows(messages: list[WebhookMessage]) -> list[tuple[dict, list[dict]]]:
    """Each message as stored (its own id, msg_id and time left out) and its deliveries'."""
    out = []
    for message in messages:
        stored = WebhookMessage.objects.get(pk=message.pk)
        assert (stored.msg_id, stored.created_at) == (message.msg_id, message.created_at)
        deliveries = [
            model_to_dict(delivery, exclude=["id", "message"])
            for delivery in WebhookDelivery.objects.filter(message=stored).order_by("endpoint_id")
        ]
        out.append((model_to_dict(stored, exclude=["id", "msg_id", "created_at"]), deliveries))
    return out


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgresql_writes_the_messages_and_their_deliveries_in_one_statement():
    endpoints = [webhooks.webhook_endpoint_create(url=f"http://127.0.0.1:9/{n}").pk for n in range(2)]
    webhooks.endpoints.subscribed("hold.created")  # the endpoints, read once and kept a moment
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        written = webhooks._write([("hold.created", HOLD), ("booking.confirmed", BOOKING)], at=None)
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert [m.type for m in written] == ["hold.created", "booking.confirmed"]
    assert all(m.pk and m.created_at and not m._state.adding for m in written)
    assert WebhookDelivery.objects.filter(message__in=written).count() == 4
    assert set(WebhookDelivery.objects.values_list("endpoint_id", flat=True)) == set(endpoints)


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_one_statement_writes_what_the_orm_writes():
    endpoints = [webhooks.webhook_endpoint_create(url=f"http://127.0.0.1:9/{n}").pk for n in range(2)]
    by_sql = rows(write(webhooks._insert_in_one_statement, endpoints))
    by_orm = rows(write(webhooks._insert_with_orm, endpoints))
    assert by_sql == by_orm
    message, deliveries = by_sql[0]
    assert message["payload"] == {"type": "hold.created", "data": HOLD}  # quotes and backslashes intact
    assert [d["endpoint"] for d in deliveries] == endpoints
    assert {(d["state"], d["attempts"], d["last_error"]) for d in deliveries} == {("pending", 0, "")}
    assert len(by_sql[1][1]) == 1


@pytest.mark.django_db
def test_a_message_written_outside_a_transaction_is_written_and_sent(monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(webhooks.sender, "submit", sent.append)
    endpoint = webhooks.webhook_endpoint_create(url="http://127.0.0.1:9/x")
    with django_capture_on_commit_callbacks(execute=True):
        message = webhooks.webhooks_emit("booking.confirmed", BOOKING, endpoint_ids=[endpoint.pk])
    assert message is not None and WebhookMessage.objects.get(pk=message.pk).payload["data"] == BOOKING
    delivery = WebhookDelivery.objects.get(message=message)
    assert sent == [{endpoint.pk: [delivery.pk]}]
