"""Best available on POST /api/lock: the choice, the same pipeline as a named lock, the errors."""

from __future__ import annotations

import pytest

from booking.models import Seat, SeatEvent, WebhookMessage
from booking.services import webhooks

from .conftest import api_client_for
from .helpers import assert_error, audit_actions, expire_hold, post

pytestmark = pytest.mark.django_db


def seat_of(event, label: str) -> Seat:
    return Seat.objects.get(event=event, label=label)


def labels(body) -> list[str]:
    return [s["label"] for s in body["seats"]]


def best(client, event, quantity=2, **options):
    return post(client, "/api/lock", {"event": event.pk, "quantity": quantity, **options})


def take(event, *labels_: str, status="booked", holder="carol"):
    """Seats taken behind the API's back (their state is what matters here)."""
    from django.utils import timezone

    seats = Seat.objects.filter(event=event, label__in=labels_)
    now = timezone.now()
    if status == "booked":
        from booking.services.bookings import booking_create

        booking = booking_create(event_id=event.pk, holder=holder, order_id=None, created_at=now)
        seats.update(status="booked", booked_by=holder, booked_at=now, booking=booking)
    elif status == "blocked":
        seats.update(status="blocked", block_reason="press")
    else:
        from datetime import timedelta

        seats.update(status="locked", locked_by=holder, locked_at=now, lock_expires_at=now + timedelta(minutes=5))


def test_the_best_pair_is_held_like_a_named_lock(alice, event, django_capture_on_commit_callbacks, monkeypatch):
    from booking.services import pipeline

    endpoint = webhooks.webhook_endpoint_create(url="http://127.0.0.1:9/hooks")
    pushed = []
    monkeypatch.setattr(pipeline, "publish_seat_changes", lambda seats, **kwargs: pushed.extend(seats))
    monkeypatch.setattr(
        webhooks.sender, "submit", lambda by_endpoint: None
    )  # no delivery attempt: the outbox is checked
    with django_capture_on_commit_callbacks(execute=True):
        response = best(alice, event, 2)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["holder"] == "alice"
    assert 59 <= body["expiresInSeconds"] <= 60 and body["lockExpiresAt"]
    assert labels(body) == ["A5", "A6"]  # the front row's middle (3 rows of 10 seats)
    for payload in body["seats"]:
        assert payload["status"] == "locked" and payload["lockExpiresAt"] == body["lockExpiresAt"]
        assert {"section", "category", "accessible"} <= set(payload)
        assert "lockedBy" not in payload and "blockReason" not in payload
        seat = Seat.objects.get(pk=payload["id"])
        assert (seat.status, seat.locked_by) == ("locked", "alice")
        assert audit_actions(seat.pk) == [("locked", "alice")]
    assert sorted(p["label"] for p in pushed) == ["A5", "A6"]
    (message,) = WebhookMessage.objects.filter(type="hold.created")
    assert message.payload["data"]["holder"] == "alice"
    assert [s["label"] for s in message.payload["data"]["seats"]] == ["A5", "A6"]
    assert message.deliveries.get().endpoint_id == endpoint.pk


def test_taken_seats_are_skipped_and_no_single_seat_is_stranded(alice, event):
    # Row A: 3 and 8 booked, 4-7 free: the pair 5-6 would leave 4 and 7 alone; 4-5 or 6-7 does not.
    take(event, "A3", "A8")
    body = best(alice, event, 2).json()
    assert labels(body) in (["A4", "A5"], ["A6", "A7"])


def test_an_expired_hold_counts_as_free_and_its_expiry_is_recorded(alice, bob, event):
    assert post(bob, "/api/lock", {"seatIds": [seat_of(event, "A5").pk, seat_of(event, "A6").pk]}).status_code == 200
    expire_hold(seat_of(event, "A5").pk, seat_of(event, "A6").pk)
    body = best(alice, event, 2).json()
    assert labels(body) == ["A5", "A6"]
    assert audit_actions(seat_of(event, "A5").pk) == [("locked", "bob"), ("expired", "bob"), ("locked", "alice")]


def test_a_live_hold_and_blocked_seats_are_never_given(alice, bob, event):
    take(event, "A5", "A6", status="locked")
    take(event, "A4", "A7", status="blocked")
    body = best(alice, event, 2).json()
    assert not {"A4", "A5", "A6", "A7"} & set(labels(body))
    assert labels(body) in (["A2", "A3"], ["A8", "A9"])


def test_category_section_and_accessible(alice, event):
    Seat.objects.filter(event=event, row="C").update(category="B", section="Balcony")
    Seat.objects.filter(event=event, label__in=["A5", "A6"]).update(accessible=True)
    body = best(alice, event, 2, category="B").json()
    assert {s["row"] for s in body["seats"]} == {"C"} and labels(body) == ["C5", "C6"]
    assert {(s["category"], s["section"]) for s in body["seats"]} == {("B", "Balcony")}
    body = best(alice, event, 2, section="").json()  # the default section: rows A and B
    assert labels(body) in (["A2", "A3"], ["A3", "A4"], ["A7", "A8"], ["A8", "A9"])  # no accessible place
    assert not any(s["accessible"] for s in body["seats"])
    body = best(alice, event, 2, accessible=True).json()
    assert labels(body) == ["A5", "A6"] and all(s["accessible"] for s in body["seats"])
    assert_error(best(alice, event, 2, category="Z"), 409, "no_seats_available")


def test_apart_takes_the_best_seats_anywhere(alice, event):
    take(event, *[f"A{n}" for n in (2, 4, 6, 8, 10)])  # every other seat of row A taken
    together = best(alice, event, 3).json()
    assert {s["row"] for s in together["seats"]} == {"B"}
    apart = best(alice, event, 3, together=False, userId="alice").json()
    assert {s["row"] for s in apart["seats"]} == {"A"} and labels(apart) == ["A3", "A5", "A7"]  # in id order


def test_nothing_fits_is_409_no_seats_available_and_changes_nothing(alice, make_event):
    small = make_event(name="Small", rows=("A",), seats_per_row=5)
    take(small, "A2", "A4")
    before = SeatEvent.objects.count()
    assert_error(best(alice, small, 2), 409, "no_seats_available")
    assert SeatEvent.objects.count() == before
    assert labels(best(alice, small, 2, together=False).json()) == ["A1", "A3"]  # apart fits (A1, A5 tie: id)
    assert_error(best(alice, small, 2, together=False), 409, "no_seats_available")  # A5 only is left


def test_the_hold_limit_applies(alice, event, settings):
    settings.BOOKING_MAX_HOLDS = 4
    assert best(alice, event, 3).status_code == 200
    body = assert_error(best(alice, event, 2), 409, "too_many_holds")
    assert len(body["seats"]) == 2
    assert Seat.objects.filter(locked_by="alice").count() == 3
    assert_error(best(alice, event, 5), 400, "invalid")


def test_box_office_holds_for_a_walk_in_and_others_may_not(alice, box_office, event):
    assert_error(best(alice, event, 2, userId="walk-in"), 403, "forbidden")
    body = best(box_office, event, 2, userId="walk-in").json()
    assert body["holder"] == "walk-in"
    assert audit_actions(body["seats"][0]["id"]) == [("locked", "walk-in")]


@pytest.mark.parametrize(
    "body",
    [
        {"event": 1},
        {"quantity": 2},
        {"event": "1", "quantity": 2},
        {"event": 1, "quantity": "2"},
        {"event": 1, "quantity": 0},
        {"event": 1, "quantity": 11},
        {"event": 1, "quantity": 2.0},
        {"event": 1, "quantity": 2, "together": "yes"},
        {"event": 1, "quantity": 2, "accessible": 1},
        {"event": 1, "quantity": 2, "category": 5},
        {"event": 1, "quantity": 2, "seatId": 3},
        {"event": 99999, "quantity": 2},
        {"event": 1, "quantity": 2, "section": "x" * 65},
    ],
)
def test_bad_fields_are_400_invalid(alice, event, body):
    if body.get("event") == 1:
        body = {**body, "event": event.pk}
    assert_error(post(alice, "/api/lock", body), 400, "invalid")
    assert not Seat.objects.exclude(status="available").exists()


def test_anonymous_is_401(anonymous, event):
    assert_error(best(anonymous, event, 2), 401, "not_authenticated")


def test_idempotency_key_replays_the_first_answer(make_user, event):
    alice = make_user("alice")
    client = api_client_for(alice)
    body = {"event": event.pk, "quantity": 2}
    first = client.post("/api/lock", body, format="json", HTTP_IDEMPOTENCY_KEY="cart-7")
    again = client.post("/api/lock", body, format="json", HTTP_IDEMPOTENCY_KEY="cart-7")
    assert first.status_code == again.status_code == 200
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert Seat.objects.filter(locked_by="alice").count() == 2  # it ran once
    assert SeatEvent.objects.filter(action="locked").count() == 2
    other = client.post("/api/lock", {**body, "quantity": 3}, format="json", HTTP_IDEMPOTENCY_KEY="cart-7")
    assert_error(other, 422, "idempotency_key_mismatch")
    # Without a key a repeat runs again: two more seats.
    assert post(client, "/api/lock", body).status_code == 200
    assert Seat.objects.filter(locked_by="alice").count() == 4


def test_a_409_is_replayed_too(make_user, make_event):
    small = make_event(name="Small", rows=("A",), seats_per_row=2)
    take(small, "A1")
    client = api_client_for(make_user("alice"))
    body = {"event": small.pk, "quantity": 2}
    first = client.post("/api/lock", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert_error(first, 409, "no_seats_available")
    Seat.objects.filter(event=small).update(status="available", booked_by="", booked_at=None, booking=None)
    again = client.post("/api/lock", body, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 409 and again["Idempotent-Replayed"] == "true"


def test_the_best_seats_beyond_the_first_window_are_found(alice, make_event, monkeypatch):
    from booking.services import best_available

    monkeypatch.setattr(best_available, "FIRST_WINDOW", 2)
    hall = make_event(name="Hall", rows=("A", "B", "C", "D"), seats_per_row=6)
    # Rows A and B are full but for single seats: 2 together are first in row C.
    take(hall, *[f"{r}{n}" for r in "AB" for n in (1, 2, 4, 5, 6)])
    body = best(alice, hall, 2).json()
    assert labels(body) == ["C3", "C4"]
    body = best(alice, hall, 3, together=False).json()
    assert labels(body) == ["A3", "B3", "C2"]  # C2 and C5 tie: the lower id
