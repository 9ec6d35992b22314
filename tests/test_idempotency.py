"""Idempotency-Key on the writes: a repeat replays the first answer and runs nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models.functions import Now
from django.utils import timezone

from booking.models import Booking, IdempotencyKey, Seat, SeatEvent
from booking.services import holds

from .helpers import assert_error

pytestmark = pytest.mark.django_db


def send(client, path, body, key, **extra):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


def test_a_repeat_replays_the_answer_and_runs_nothing(alice, seat_ids):
    first = send(alice, "/api/lock", {"seatIds": seat_ids[:2]}, "k-1")
    assert first.status_code == 200 and "Idempotent-Replayed" not in first
    audit = SeatEvent.objects.count()
    again = send(alice, "/api/lock", {"seatIds": seat_ids[:2]}, "k-1")
    assert again.status_code == 200
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()  # the same expiry: the hold was not renewed
    assert SeatEvent.objects.count() == audit
    row = IdempotencyKey.objects.get()
    assert (row.state, row.status_code, row.path, row.user.username) == ("done", 200, "/api/lock", "alice")


def test_a_retried_confirm_with_its_key_answers_the_same_booking(alice, seat_ids):
    assert send(alice, "/api/lock", {"seatId": seat_ids[0]}, "hold").status_code == 200
    first = send(alice, "/api/confirm", {"seatId": seat_ids[0], "orderId": "o-9"}, "pay-o-9")
    again = send(alice, "/api/confirm", {"seatId": seat_ids[0], "orderId": "o-9"}, "pay-o-9")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["booking"]["reference"] == first.json()["booking"]["reference"]
    assert Booking.objects.count() == 1


def test_the_same_key_with_another_body_is_422(alice, seat_ids):
    assert send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k").status_code == 200
    assert_error(send(alice, "/api/lock", {"seatId": seat_ids[1]}, "k"), 422, "idempotency_key_mismatch")
    assert Seat.objects.get(pk=seat_ids[1]).status == "available"


def test_a_key_is_scoped_to_the_caller_and_the_path(alice, bob, seat_ids):
    assert send(alice, "/api/lock", {"seatId": seat_ids[0]}, "shared").status_code == 200
    # Bob's request with the same key and body is his own: it runs (and meets alice's hold).
    assert_error(send(bob, "/api/lock", {"seatId": seat_ids[0]}, "shared"), 409, "seat_locked")
    # The same key on another path is another key.
    assert send(alice, "/api/unlock", {"seatId": seat_ids[0]}, "shared").status_code == 200
    assert Seat.objects.get(pk=seat_ids[0]).status == "available"


def test_a_4xx_answer_is_kept_even_when_the_seat_frees_up_later(alice, bob, seat_ids):
    assert send(alice, "/api/lock", {"seatId": seat_ids[0]}, "a").status_code == 200
    refused = send(bob, "/api/lock", {"seatId": seat_ids[0]}, "b")
    assert_error(refused, 409, "seat_locked")
    assert send(alice, "/api/unlock", {"seatId": seat_ids[0]}, "c").status_code == 200
    again = send(bob, "/api/lock", {"seatId": seat_ids[0]}, "b")
    assert again.status_code == 409 and again["Idempotent-Replayed"] == "true"
    assert again.json() == refused.json()
    assert Seat.objects.get(pk=seat_ids[0]).status == "available"
    # A malformed body's 400 is kept too.
    assert_error(send(bob, "/api/lock", {"seatId": "x"}, "d"), 400, "invalid")
    assert send(bob, "/api/lock", {"seatId": "x"}, "d")["Idempotent-Replayed"] == "true"


def test_a_503_is_not_kept_so_a_retry_runs(alice, seat_ids, monkeypatch):
    from booking.errors import Busy

    lock = holds.lock_seat_rows

    def busy(*args, **kwargs):
        raise Busy()

    monkeypatch.setattr(holds, "lock_seat_rows", busy)
    assert_error(send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k"), 503, "busy")
    assert not IdempotencyKey.objects.exists()
    monkeypatch.setattr(holds, "lock_seat_rows", lock)
    retry = send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k")
    assert retry.status_code == 200 and "Idempotent-Replayed" not in retry


def test_a_429_is_not_kept(alice, seat_ids, monkeypatch):
    from rest_framework.throttling import UserRateThrottle

    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "1/minute", "anon": "1000/hour"})
    assert alice.get("/api/me/seats").status_code == 200  # uses the one request
    assert_error(send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k"), 429, "throttled")
    assert not IdempotencyKey.objects.exists()


def test_a_bug_after_the_writes_rolls_back_and_a_retry_runs(alice, seat_ids, monkeypatch):
    save_audit = holds.save_audit

    def save_then_fail(audit):
        save_audit(audit)
        raise RuntimeError("a bug after the writes")

    monkeypatch.setattr(holds, "save_audit", save_then_fail)
    alice.raise_request_exception = False
    assert send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k").status_code == 500
    assert Seat.objects.get(pk=seat_ids[0]).status == "available"
    assert not IdempotencyKey.objects.exists()  # 5xx: not kept
    monkeypatch.setattr(holds, "save_audit", save_audit)
    assert send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k").status_code == 200


def _running_key(user, path, body, *, lease_seconds):
    from booking.services.idempotency import fingerprint

    return IdempotencyKey.objects.create(
        user=user,
        path=path,
        key="busy-key",
        fingerprint=fingerprint(body),
        state="running",
        claim="another-attempt",
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds),
        expires_at=timezone.now() + timedelta(days=1),
    )


def test_while_the_first_still_runs_the_key_is_in_use(alice, make_user, seat_ids):
    body = b'{"seatId":%d}' % seat_ids[0]
    _running_key(make_user("alice"), "/api/lock", body, lease_seconds=10)
    response = alice.post("/api/lock", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="busy-key")
    assert_error(response, 409, "idempotency_key_in_use")
    assert 1 <= int(response["Retry-After"]) <= 10
    assert Seat.objects.get(pk=seat_ids[0]).status == "available"


def test_a_key_whose_attempt_died_is_taken_over_after_its_lease(alice, make_user, seat_ids):
    body = b'{"seatId":%d}' % seat_ids[0]
    _running_key(make_user("alice"), "/api/lock", body, lease_seconds=-1)
    response = alice.post("/api/lock", body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="busy-key")
    assert response.status_code == 200
    row = IdempotencyKey.objects.get()
    assert row.state == "done" and row.claim != "another-attempt"


def _assert_the_first_attempt_changed_nothing(seat_id):
    assert Seat.objects.get(pk=seat_id).status == "available"
    assert not SeatEvent.objects.exists()
    assert IdempotencyKey.objects.get().claim == "the-retry"  # the retry's claim is left alone


@pytest.mark.django_db(transaction=True)
def test_an_attempt_whose_key_was_taken_over_before_its_write_does_not_commit(alice, seat_ids, monkeypatch):
    """The first attempt ran past its lease before its write, and a retry took the key."""
    from booking.api import views

    resolve_holder = views.resolve_holder

    def taken_over_meanwhile(*args, **kwargs):
        IdempotencyKey.objects.update(claim="the-retry")  # committed: we are in autocommit here
        return resolve_holder(*args, **kwargs)

    monkeypatch.setattr(views, "resolve_holder", taken_over_meanwhile)
    assert_error(send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k"), 409, "idempotency_key_in_use")
    _assert_the_first_attempt_changed_nothing(seat_ids[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_attempt_whose_key_was_taken_over_during_its_write_rolls_back(alice, seat_ids, monkeypatch):
    """The takeover commits on another connection while the first attempt holds its row locks."""
    import threading

    from django.db import connections

    lock_seat_rows = holds.lock_seat_rows

    def take_over():
        try:
            IdempotencyKey.objects.update(claim="the-retry")
        finally:
            connections.close_all()

    def taken_over_meanwhile(*args, **kwargs):
        result = lock_seat_rows(*args, **kwargs)
        retry = threading.Thread(target=take_over)
        retry.start()
        retry.join(timeout=10)
        return result

    monkeypatch.setattr(holds, "lock_seat_rows", taken_over_meanwhile)
    assert_error(send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k"), 409, "idempotency_key_in_use")
    _assert_the_first_attempt_changed_nothing(seat_ids[0])


def test_a_key_past_its_retention_is_new_and_is_purged(alice, seat_ids, settings):
    assert send(alice, "/api/lock", {"seatId": seat_ids[0]}, "old").status_code == 200
    IdempotencyKey.objects.update(expires_at=Now() - timedelta(seconds=1))
    again = send(alice, "/api/lock", {"seatId": seat_ids[1]}, "old")  # another body: no mismatch now
    assert again.status_code == 200 and "Idempotent-Replayed" not in again
    IdempotencyKey.objects.update(expires_at=Now() - timedelta(seconds=1))
    assert send(alice, "/api/lock", {"seatId": seat_ids[2]}, "kept").status_code == 200
    call_command("purge_idempotency_keys")
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["kept"]

    from booking.tasks import purge_idempotency_keys

    IdempotencyKey.objects.update(expires_at=Now() - timedelta(seconds=1))
    assert purge_idempotency_keys() == 1


def test_a_new_key_is_kept_for_the_retention_setting(alice, seat_ids, settings):
    settings.BOOKING_IDEMPOTENCY_SECONDS = 3600
    assert send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k").status_code == 200
    row = IdempotencyKey.objects.get()
    assert timedelta(minutes=59) < row.expires_at - row.created_at <= timedelta(minutes=61)


@pytest.mark.parametrize("key", ["", "x" * 256, "schlüssel", "tab\there"])
def test_a_malformed_key_is_invalid(alice, seat_ids, key):
    assert_error(send(alice, "/api/lock", {"seatId": seat_ids[0]}, key), 400, "invalid")
    assert Seat.objects.get(pk=seat_ids[0]).status == "available"


def test_a_cancel_with_its_key_is_replayed(alice, seat_ids):
    assert send(alice, "/api/lock", {"seatIds": seat_ids[:2]}, "h").status_code == 200
    reference = send(alice, "/api/confirm", {"seatIds": seat_ids[:2]}, "c").json()["booking"]["reference"]
    first = send(alice, f"/api/bookings/{reference}/cancel", {"seatIds": seat_ids[:1]}, "x")
    again = send(alice, f"/api/bookings/{reference}/cancel", {"seatIds": seat_ids[:1]}, "x")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert SeatEvent.objects.filter(action="cancelled").count() == 1


def test_the_answer_of_a_write_is_kept_in_its_own_transaction(alice, seat_ids, django_assert_num_queries):
    """No separate transaction after the write: the key's row becomes done inside it."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert send(alice, "/api/lock", {"seatId": seat_ids[0]}, "k").status_code == 200
    statements = [q["sql"] for q in captured.captured_queries]
    done = [n for n, sql in enumerate(statements) if sql.startswith('UPDATE "booking_idempotencykey"')]
    audit = [n for n, sql in enumerate(statements) if 'INSERT INTO "booking_seatevent"' in sql]
    assert len(done) == 1 and audit and done[0] > audit[-1]
    # Between the audit rows and the key's answer there is no COMMIT: one transaction.
    assert not any("COMMIT" in sql or "RELEASE" in sql for sql in statements[audit[-1] : done[0]])
