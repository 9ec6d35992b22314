"""Bookings under races, on real threads with their own connections, on committed data."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from booking.models import Booking, IdempotencyKey, Seat, SeatEvent

from .conftest import api_client_for
from .helpers import post
from .racing import race, statuses

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def send(client, path, body, key=None):
    extra = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(path, body, format="json", **extra)


@pytest.fixture
def held(make_user, seat_ids):
    alice = make_user("alice")
    client = api_client_for(alice)
    assert post(client, "/api/lock", {"seatIds": seat_ids[:3]}).status_code == 200
    return alice, seat_ids[:3]


def test_twenty_confirms_with_one_key_make_one_booking_and_answer_it(held):
    alice, ids = held
    clients = [api_client_for(alice) for _ in range(20)]
    body = {"seatIds": ids, "orderId": "order-1"}
    answers = race([lambda c=c: send(c, "/api/confirm", body, "pay-order-1") for c in clients])
    assert set(statuses(answers)) <= {200, 409}, [a.content for a in answers]
    in_use = [a for a in answers if a.status_code == 409]
    assert all(a.json()["code"] == "idempotency_key_in_use" and a["Retry-After"] for a in in_use)
    # Whoever was told to wait gets the same answer on its retry.
    retried = [send(api_client_for(alice), "/api/confirm", body, "pay-order-1") for _ in in_use]
    successes = [a for a in answers if a.status_code == 200] + retried
    assert {a.status_code for a in retried} <= {200}
    assert len({a.json()["booking"]["reference"] for a in successes}) == 1
    assert sum(1 for a in successes if a.get("Idempotent-Replayed") != "true") == 1  # one ran; the rest replayed
    assert Booking.objects.count() == 1
    assert SeatEvent.objects.filter(action="booked").count() == 3
    assert IdempotencyKey.objects.get().state == "done"


def test_twenty_confirms_with_different_keys_make_one_booking_and_retries_answer_it(held):
    alice, ids = held
    clients = [api_client_for(alice) for _ in range(20)]
    answers = race(
        [lambda n=n, c=c: send(c, "/api/confirm", {"seatIds": ids}, f"try-{n}") for n, c in enumerate(clients)]
    )
    assert statuses(answers) == {200: 20}, [a.content for a in answers if a.status_code != 200]
    assert len({a.json()["booking"]["reference"] for a in answers}) == 1
    assert Booking.objects.count() == 1
    assert SeatEvent.objects.filter(action="booked").count() == 3
    assert set(Seat.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"booked"}


def test_a_cancel_racing_confirms_of_the_same_booking_leaves_each_seat_in_one_state(held):
    alice, ids = held
    client = api_client_for(alice)
    reference = post(client, "/api/confirm", {"seatIds": ids}).json()["booking"]["reference"]
    calls = [lambda: post(api_client_for(alice), f"/api/bookings/{reference}/cancel", {})] + [
        lambda: post(api_client_for(alice), "/api/confirm", {"seatIds": ids}) for _ in range(10)
    ]
    answers = race(calls)
    cancel, confirms = answers[0], answers[1:]
    assert cancel.status_code == 200, cancel.content
    # A confirm before the cancel answers the booking; after it, the seats are free (not held by alice).
    for answer in confirms:
        if answer.status_code == 200:
            assert answer.json()["booking"]["reference"] == reference
        else:
            assert answer.status_code == 409 and answer.json()["code"] in {"not_locked_by_you", "hold_expired"}
    for seat in Seat.objects.filter(pk__in=ids):
        assert (seat.status, seat.booking_id, seat.booked_by) == ("available", None, "")
        trail = list(SeatEvent.objects.filter(seat=seat).order_by("id").values_list("action", flat=True))
        assert trail == ["locked", "booked", "cancelled"]
    assert Counter(SeatEvent.objects.filter(booking__reference=reference).values_list("action", flat=True)) == {
        "booked": 3,
        "cancelled": 3,
    }


def test_a_cancelled_seat_is_lockable_at_once_by_another_holder(held, make_user):
    alice, ids = held
    reference = post(api_client_for(alice), "/api/confirm", {"seatIds": ids}).json()["booking"]["reference"]
    fans = [api_client_for(make_user(f"fan{n}")) for n in range(5)]

    def cancel():
        time.sleep(0.2)
        return post(api_client_for(alice), f"/api/bookings/{reference}/cancel", {"seatIds": ids[:1]})

    def lock_until_free(client):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            answer = post(client, "/api/lock", {"seatId": ids[0]})
            if answer.status_code == 200:
                return answer
            assert answer.json()["code"] in {"seat_booked", "seat_locked"}
        return answer

    answers = race([cancel] + [lambda c=c: lock_until_free(c) for c in fans])
    assert answers[0].status_code == 200
    winners = [a for a in answers[1:] if a.status_code == 200]
    assert len(winners) == 1  # the seat was free at once, and went to exactly one fan
    seat = Seat.objects.get(pk=ids[0])
    assert (seat.status, seat.locked_by) == ("locked", winners[0].json()["holder"])
