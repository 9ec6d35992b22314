"""The public reads: seats, events with counts, the seat map, the caller's seats, health."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from booking.models import SeatEvent

from .helpers import expire_hold, post

pytestmark = pytest.mark.django_db


def test_seats_filter_by_event_and_status(anonymous, alice, bob, event, make_event, seat_ids):
    make_event(name="Other")
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    post(bob, "/api/lock", {"seatId": seat_ids[1]})
    post(bob, "/api/confirm", {"seatId": seat_ids[1]})
    all_seats = anonymous.get("/api/seats").json()
    assert len(all_seats) == 60
    of_event = anonymous.get(f"/api/seats?event={event.pk}").json()
    assert [s["id"] for s in of_event] == seat_ids
    assert [s["id"] for s in anonymous.get(f"/api/seats?event={event.pk}&status=locked").json()] == [seat_ids[0]]
    assert [s["id"] for s in anonymous.get(f"/api/seats?event={event.pk}&status=booked").json()] == [seat_ids[1]]
    assert len(anonymous.get(f"/api/seats?event={event.pk}&status=available").json()) == 28


def test_event_list_and_detail_with_counts(anonymous, alice, event, seat_ids):
    post(alice, "/api/lock", {"seatIds": seat_ids[:3]})
    post(alice, "/api/confirm", {"seatId": seat_ids[0]})
    listed = anonymous.get("/api/events").json()
    assert [(e["id"], e["name"], e["holdSeconds"]) for e in listed] == [(event.pk, "Concert", 60)]
    detail = anonymous.get(f"/api/events/{event.pk}").json()
    assert detail["counts"] == {"available": 27, "locked": 2, "booked": 1, "blocked": 0}
    assert detail["seatCount"] == 30
    assert detail["startsAt"].endswith("Z")


def test_expired_holds_read_as_available_and_are_released_by_the_read(anonymous, alice, event, seat_ids):
    post(alice, "/api/lock", {"seatIds": seat_ids[:2]})
    expire_hold(seat_ids[0])
    detail = anonymous.get(f"/api/events/{event.pk}").json()
    assert detail["counts"] == {"available": 29, "locked": 1, "booked": 0, "blocked": 0}
    seat_map = {s["id"]: s for s in anonymous.get(f"/api/events/{event.pk}/seats").json()}
    assert seat_map[seat_ids[0]]["status"] == "available"
    assert seat_map[seat_ids[0]]["lockExpiresAt"] is None
    assert seat_map[seat_ids[1]]["status"] == "locked"
    assert SeatEvent.objects.filter(seat_id=seat_ids[0], action="expired", holder="alice").count() == 1
    mine = alice.get("/api/me/seats").json()
    assert [s["id"] for s in mine["seats"]] == [seat_ids[1]]


def test_seat_map_is_one_response_and_a_few_queries(anonymous, make_event):
    event = make_event(rows=[chr(c) for c in range(ord("A"), ord("T") + 1)], seats_per_row=50)
    with CaptureQueriesContext(connection) as queries:
        response = anonymous.get(f"/api/events/{event.pk}/seats")
    assert response.status_code == 200
    assert len(response.json()) == 1000
    assert len(queries) <= 3


def test_me_seats_lists_unexpired_holds_and_bookings(alice, bob, seat_ids):
    post(alice, "/api/lock", {"seatIds": seat_ids[:3]})
    post(alice, "/api/confirm", {"seatId": seat_ids[0]})
    post(bob, "/api/lock", {"seatId": seat_ids[5]})
    expire_hold(seat_ids[2])
    body = alice.get("/api/me/seats").json()
    assert body["holder"] == "alice"
    assert [(s["id"], s["status"]) for s in body["seats"]] == [(seat_ids[0], "booked"), (seat_ids[1], "locked")]


def test_lock_expiry_is_the_database_time(alice, seat_ids):
    from datetime import datetime

    body = post(alice, "/api/lock", {"seatId": seat_ids[0]}).json()
    expires = datetime.fromisoformat(body["lockExpiresAt"].replace("Z", "+00:00"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT CURRENT_TIMESTAMP")
        db_now = cursor.fetchone()[0]
    if isinstance(db_now, str):  # SQLite
        db_now = datetime.fromisoformat(db_now + "+00:00")
    assert timedelta(seconds=58) < expires - db_now <= timedelta(seconds=61)  # SQLite: whole seconds


def test_health_is_503_when_the_database_does_not_answer(anonymous, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def broken(*args, **kwargs):
        from django.db import OperationalError

        raise OperationalError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", broken)
    response = anonymous.get("/api/health")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def test_the_live_snapshot_is_one_query_and_shows_expired_holds_as_available(
    alice, event, seat_ids, django_assert_num_queries
):
    from booking.selectors import event_seat_snapshot

    post(alice, "/api/lock", {"seatIds": seat_ids[:2]})
    expire_hold(seat_ids[0])
    with django_assert_num_queries(1):
        seats, now = event_seat_snapshot(event_id=event.pk)
    assert [s["id"] for s in seats] == seat_ids
    assert (seats[0]["status"], seats[0]["lockExpiresAt"]) == ("available", None)
    assert seats[1]["status"] == "locked"
    assert now.tzinfo is not None


def test_the_live_snapshot_of_an_unknown_or_empty_event(make_event, db):
    from booking.models import Event
    from booking.selectors import event_seat_snapshot

    assert event_seat_snapshot(event_id=999999) is None
    empty = Event.objects.create(name="Empty", starts_at=make_event().starts_at)
    assert event_seat_snapshot(event_id=empty.pk)[0] == []


def test_seat_map_agrees_with_the_seat_list(anonymous, alice, bob, event, seat_ids):
    """The seat map shows every seat as the seat list does: held, booked, expired, free."""
    from booking import selectors

    post(alice, "/api/lock", {"seatIds": seat_ids[:3]})
    post(alice, "/api/confirm", {"seatId": seat_ids[0]})
    post(bob, "/api/lock", {"seatId": seat_ids[5]})
    expire_hold(seat_ids[5])
    seat_map = selectors.event_seat_map(event_id=event.pk)  # reads only: the expired hold is still stored
    assert seat_map == selectors.seats_list(event_id=event.pk)
    assert [seat["status"] for seat in seat_map[:6]] == [
        "booked",
        "locked",
        "locked",
        "available",
        "available",
        "available",
    ]
    assert seat_map[1]["lockExpiresAt"] and seat_map[0]["lockExpiresAt"] is None
    # The API releases the expired hold first (a write: one version more), then reads the same map.
    seat_map[5]["version"] += 1
    assert anonymous.get(f"/api/events/{event.pk}/seats").json() == seat_map
