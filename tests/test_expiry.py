"""Expired holds are released: by a real Celery worker on beat's schedule, by
reads, and by the cron command; each expiry with one audit row and a log line."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models.functions import Now

from booking.models import Seat, SeatAction, SeatEvent, SeatStatus
from booking.services import seats_lock

from .conftest import redis_available, redis_url, require
from .processes import child_env, running_worker_and_beat

SWEEP_SECONDS = 1.0


def expire_now(seat_ids: list[int]) -> None:
    """Move holds' expiry into the past, as if their time had run out."""
    Seat.objects.filter(pk__in=seat_ids).update(lock_expires_at=Now() - timedelta(seconds=1))


def seat_row(seat_id: int) -> dict:
    """The stored row, read directly (not through a selector, which would release it)."""
    return Seat.objects.values("status", "locked_by", "lock_expires_at").get(pk=seat_id)


def expired_rows(seat_id: int) -> list[tuple[str, str]]:
    return list(SeatEvent.objects.filter(seat_id=seat_id, action=SeatAction.EXPIRED).values_list("holder", "action"))


@pytest.fixture
def worker_and_beat(tmp_path, transactional_db):
    """A Celery worker and a beat process (separate, as in production) on the local Redis
    and the test database, sweeping every second; yields the worker."""
    require(redis_available(), f"Redis is not reachable at {redis_url()}")
    env = child_env(
        CELERY_BROKER_URL=redis_url(),
        BOOKING_SWEEP_SECONDS=str(SWEEP_SECONDS),
        BOOKING_VAR_DIR=str(tmp_path),  # beat's schedule file
        CELERY_TASK_LOG_LEVEL="INFO",
    )
    with running_worker_and_beat(env=env) as worker:
        yield worker


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_worker_releases_unread_hold_within_sweep_interval(worker_and_beat, make_event, alice):
    event = make_event(rows=("A",), seats_per_row=4, hold_seconds=1)
    seat = event.seats.get(label="A2")

    response = alice.post("/api/lock", {"seatId": seat.pk}, format="json")
    assert response.status_code == 200
    expires_at = seat_row(seat.pk)["lock_expires_at"]
    assert seat_row(seat.pk)["status"] == SeatStatus.LOCKED

    # Nobody reads the seat: only the worker can release it.
    deadline = expires_at.timestamp() + SWEEP_SECONDS + 1.0
    while seat_row(seat.pk)["status"] != SeatStatus.AVAILABLE and time.time() < deadline + 0.5:
        time.sleep(0.05)
    released_at = time.time()

    row = seat_row(seat.pk)
    assert row == {"status": SeatStatus.AVAILABLE, "locked_by": "", "lock_expires_at": None}
    assert released_at <= deadline, f"released {released_at - expires_at.timestamp():.2f}s after expiry"
    assert expired_rows(seat.pk) == [("alice", SeatAction.EXPIRED)]
    worker_and_beat.wait_for_output(
        rf"Seat A2 \(id {seat.pk}\) of event {event.pk} released: hold by alice expired at", timeout=2
    )
    # The other seats were never touched.
    assert SeatEvent.objects.exclude(seat=seat).count() == 0


@pytest.mark.django_db(transaction=True)
def test_seat_map_read_releases_expired_holds_without_a_worker(make_event, alice, anonymous, caplog):
    event = make_event(rows=("A",), seats_per_row=3)
    a1, a2, a3 = event.seats.order_by("number").values_list("pk", flat=True)
    assert alice.post("/api/lock", {"seatIds": [a1, a2]}, format="json").status_code == 200
    expire_now([a1])

    # Stored as locked until something releases it; no worker runs here.
    assert seat_row(a1)["status"] == SeatStatus.LOCKED
    with caplog.at_level("INFO", logger="booking.expiry"):
        response = anonymous.get(f"/api/events/{event.pk}/seats")

    assert response.status_code == 200
    by_id = {seat["id"]: seat for seat in response.json()}
    assert by_id[a1]["status"] == "available" and by_id[a1]["lockExpiresAt"] is None
    assert by_id[a2]["status"] == "locked"
    assert by_id[a3]["status"] == "available"
    assert seat_row(a1)["status"] == SeatStatus.AVAILABLE
    assert seat_row(a2)["status"] == SeatStatus.LOCKED
    assert expired_rows(a1) == [("alice", SeatAction.EXPIRED)]
    assert expired_rows(a2) == []
    assert f"Seat A1 (id {a1}) of event {event.pk} released: hold by alice" in caplog.text

    # A second read finds nothing more to release: still one audit row.
    anonymous.get(f"/api/seats?event={event.pk}")
    assert expired_rows(a1) == [("alice", SeatAction.EXPIRED)]


@pytest.mark.django_db(transaction=True)
def test_seat_list_read_releases_expired_holds(make_event, bob, anonymous):
    event = make_event(rows=("A",), seats_per_row=2)
    a1 = event.seats.get(label="A1").pk
    assert bob.post("/api/lock", {"seatId": a1}, format="json").status_code == 200
    expire_now([a1])

    response = anonymous.get(f"/api/seats?event={event.pk}&status=available")

    assert response.status_code == 200
    assert a1 in [seat["id"] for seat in response.json()]
    assert seat_row(a1)["status"] == SeatStatus.AVAILABLE
    assert expired_rows(a1) == [("bob", SeatAction.EXPIRED)]


@pytest.mark.django_db(transaction=True)
def test_release_command_sweeps_once_and_prints_the_count(make_event, capsys):
    event = make_event(rows=("A",), seats_per_row=4)
    a1, a2, a3, a4 = event.seats.order_by("number").values_list("pk", flat=True)
    seats_lock(seat_ids=[a1, a2, a3], holder="alice")
    expire_now([a1, a2])

    call_command("release_expired_holds")
    assert capsys.readouterr().out.strip() == "Released 2 expired holds."
    assert [seat_row(s)["status"] for s in (a1, a2, a3, a4)] == ["available", "available", "locked", "available"]
    assert SeatEvent.objects.filter(action=SeatAction.EXPIRED).count() == 2

    call_command("release_expired_holds")
    assert capsys.readouterr().out.strip() == "Released 0 expired holds."
    assert SeatEvent.objects.filter(action=SeatAction.EXPIRED).count() == 2


@pytest.mark.django_db(transaction=True)
def test_expired_hold_cannot_be_confirmed_after_the_sweep(make_event, alice):
    event = make_event(rows=("A",), seats_per_row=1)
    a1 = event.seats.get().pk
    assert alice.post("/api/lock", {"seatId": a1}, format="json").status_code == 200
    expire_now([a1])
    call_command("release_expired_holds")

    response = alice.post("/api/confirm", {"seatId": a1}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "hold_expired"
    assert seat_row(a1)["status"] == SeatStatus.AVAILABLE


@pytest.mark.django_db(transaction=True)
def test_sweep_releases_in_batches(make_event):
    event = make_event(rows=("A", "B"), seats_per_row=10)
    ids = list(event.seats.order_by("pk").values_list("pk", flat=True))
    for start in range(0, 20, 10):
        seats_lock(seat_ids=ids[start : start + 10], holder=f"holder{start}")
    expire_now(ids[:15])

    from booking.services import holds_release_expired

    assert holds_release_expired(batch_size=4) == 15
    assert SeatEvent.objects.filter(action=SeatAction.EXPIRED).count() == 15
    assert Seat.objects.filter(status=SeatStatus.LOCKED).count() == 5
