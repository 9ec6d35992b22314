"""Bookings: what a confirm makes, how a holder and the box office find and cancel them."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from booking import references, services
from booking.models import Booking, Event, Seat, SeatEvent

from .helpers import assert_error, post

pytestmark = pytest.mark.django_db

REFERENCE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}$")


def book(client, seat_ids, **extra):
    assert post(client, "/api/lock", {"seatIds": seat_ids}).status_code == 200
    response = post(client, "/api/confirm", {"seatIds": seat_ids, **extra})
    assert response.status_code == 200, response.content
    return response.json()["booking"]


def test_confirm_makes_one_booking_of_its_seats(alice, seat_ids):
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:2]}).status_code == 200
    response = post(alice, "/api/confirm", {"seatIds": seat_ids[:2], "orderId": "shop-order-77"})
    assert response.status_code == 200
    body = response.json()
    booking = body["booking"]
    assert REFERENCE.match(booking["reference"])
    assert booking["holder"] == "alice" and booking["status"] == "confirmed"
    assert booking["orderId"] == "shop-order-77" and booking["cancelledSeats"] == []
    assert [s["id"] for s in booking["seats"]] == seat_ids[:2]
    assert {s["status"] for s in booking["seats"]} == {"booked"}
    assert booking["createdAt"].endswith("Z")
    row = Booking.objects.get(reference=booking["reference"])
    assert (row.holder, row.order_id, row.event_id) == ("alice", "shop-order-77", booking["event"])
    assert set(Seat.objects.filter(booking=row).values_list("pk", flat=True)) == set(seat_ids[:2])
    booked_rows = SeatEvent.objects.filter(action="booked")
    assert set(booked_rows.values_list("seat_id", "booking_id")) == {(s, row.pk) for s in seat_ids[:2]}


def test_confirm_without_order_id_answers_null(alice, seat_ids):
    assert book(alice, seat_ids[:1])["orderId"] is None


@pytest.mark.parametrize("order_id", ["", "x" * 101, 17, None, ["a"]])
def test_a_malformed_order_id_is_invalid_and_books_nothing(alice, seat_ids, order_id):
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert_error(post(alice, "/api/confirm", {"seatId": seat_ids[0], "orderId": order_id}), 400, "invalid")
    assert not Booking.objects.exists()
    assert Seat.objects.get(pk=seat_ids[0]).status == "locked"


def test_the_seats_of_one_confirm_belong_to_one_event(alice, seat_ids, make_event, settings):
    other = make_event(name="Other").seats.order_by("pk").first().pk
    assert post(alice, "/api/lock", {"seatIds": [seat_ids[0], other]}).status_code == 200
    body = assert_error(post(alice, "/api/confirm", {"seatIds": [seat_ids[0], other]}), 400, "invalid")
    assert "one event" in body["detail"]
    assert not Booking.objects.exists()
    assert set(Seat.objects.filter(pk__in=[seat_ids[0], other]).values_list("status", flat=True)) == {"locked"}


def test_a_retried_confirm_answers_the_same_booking(alice, seat_ids):
    first = book(alice, seat_ids[:2], orderId="o-1")
    again = post(alice, "/api/confirm", {"seatIds": seat_ids[:2], "orderId": "o-1"})
    assert again.status_code == 200
    assert again.json()["booking"] == first
    assert Booking.objects.count() == 1
    assert SeatEvent.objects.filter(action="booked").count() == 2


def test_the_holder_finds_the_booking_by_its_reference_as_typed(alice, seat_ids):
    booking = book(alice, seat_ids[:2])
    reference = booking["reference"]
    typed = [reference, reference.lower(), f"{reference[:4]}-{reference[4:]}", reference.replace("0", "o")]
    for text in typed:
        response = alice.get(f"/api/bookings/{text}")
        assert response.status_code == 200, (text, response.content)
        assert response.json() == booking


def test_another_holder_gets_404_and_the_box_office_sees_it(alice, bob, box_office, anonymous, seat_ids):
    reference = book(alice, seat_ids[:1])["reference"]
    assert_error(bob.get(f"/api/bookings/{reference}"), 404, "booking_not_found")
    assert box_office.get(f"/api/bookings/{reference}").json()["holder"] == "alice"
    assert_error(anonymous.get(f"/api/bookings/{reference}"), 401, "not_authenticated")


@pytest.mark.parametrize("text", ["ABCDEFGH", "short", "UUUUUUUU", "toolongreference", "%00%00"])
def test_unknown_or_malformed_references_are_404(alice, text):
    assert_error(alice.get(f"/api/bookings/{text}"), 404, "booking_not_found")
    assert_error(post(alice, f"/api/bookings/{text}/cancel", {}), 404, "booking_not_found")


def test_my_bookings_newest_first_in_pages(alice, bob, box_office, seat_ids):
    made = [book(alice, [seat_id])["reference"] for seat_id in seat_ids[:3]]
    book(bob, seat_ids[5:6])
    first = alice.get("/api/me/bookings?pageSize=2").json()
    assert [b["reference"] for b in first["results"]] == made[::-1][:2]
    assert first["previous"] is None and first["next"]
    second = alice.get(first["next"]).json()
    assert [b["reference"] for b in second["results"]] == made[:1]
    assert second["next"] is None
    assert [b["holder"] for b in box_office.get("/api/me/bookings?userId=alice").json()["results"]] == ["alice"] * 3
    assert_error(bob.get("/api/me/bookings?userId=alice"), 403, "forbidden")


def test_my_bookings_of_someone_with_none_is_an_empty_page(alice):
    assert alice.get("/api/me/bookings").json() == {"next": None, "previous": None, "results": []}


def test_cancel_the_whole_booking(alice, bob, seat_ids, django_capture_on_commit_callbacks, monkeypatch):
    from booking.services import pipeline

    booking = book(alice, seat_ids[:2])
    pushed = []
    monkeypatch.setattr(pipeline, "publish_seat_changes", lambda seats, **kwargs: pushed.extend(seats))
    with django_capture_on_commit_callbacks(execute=True):
        response = post(alice, f"/api/bookings/{booking['reference']}/cancel", {})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["holder"] == "alice"
    assert [(s["id"], s["status"]) for s in body["seats"]] == [(seat_ids[0], "available"), (seat_ids[1], "available")]
    assert body["booking"]["status"] == "cancelled"
    assert body["booking"]["seats"] == []
    assert [s["id"] for s in body["booking"]["cancelledSeats"]] == seat_ids[:2]
    assert [(s["id"], s["status"]) for s in pushed] == [(seat_ids[0], "available"), (seat_ids[1], "available")]
    for seat_id in seat_ids[:2]:
        seat = Seat.objects.get(pk=seat_id)
        assert (seat.status, seat.booking_id, seat.booked_by) == ("available", None, "")
    cancelled = SeatEvent.objects.filter(action="cancelled")
    assert set(cancelled.values_list("seat_id", "holder", "actor__username")) == {
        (seat_ids[0], "alice", "alice"),
        (seat_ids[1], "alice", "alice"),
    }
    assert {row.booking.reference for row in cancelled} == {booking["reference"]}
    # Available at once: another holder takes a cancelled seat.
    assert post(bob, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    # Nothing is left to cancel.
    assert_error(post(alice, f"/api/bookings/{booking['reference']}/cancel", {}), 409, "booking_cancelled")
    assert alice.get(f"/api/bookings/{booking['reference']}").json()["status"] == "cancelled"


def test_cancel_some_seats_of_a_booking(alice, seat_ids):
    booking = book(alice, seat_ids[:3])
    response = post(alice, f"/api/bookings/{booking['reference']}/cancel", {"seatIds": [seat_ids[1]]})
    assert response.status_code == 200
    after = response.json()["booking"]
    assert after["status"] == "confirmed"
    assert [s["id"] for s in after["seats"]] == [seat_ids[0], seat_ids[2]]
    assert [s["id"] for s in after["cancelledSeats"]] == [seat_ids[1]]
    # A seat cancelled before counts as done; only the rest is cancelled.
    again = post(alice, f"/api/bookings/{booking['reference']}/cancel", {"seatIds": seat_ids[:2]})
    assert [s["id"] for s in again.json()["seats"]] == [seat_ids[0]]
    assert_error(
        post(alice, f"/api/bookings/{booking['reference']}/cancel", {"seatIds": seat_ids[:2]}), 409, "booking_cancelled"
    )


def test_cancel_of_seats_outside_the_booking_names_them_and_changes_nothing(alice, bob, seat_ids):
    booking = book(alice, seat_ids[:2])
    book(bob, seat_ids[5:6])
    body = {"seatIds": [seat_ids[0], seat_ids[5], seat_ids[7]]}
    assert_error(
        post(alice, f"/api/bookings/{booking['reference']}/cancel", body),
        409,
        "seat_not_in_booking",
        seats=sorted([seat_ids[5], seat_ids[7]]),
    )
    assert Seat.objects.filter(pk__in=seat_ids[:2], status="booked").count() == 2
    assert not SeatEvent.objects.filter(action="cancelled").exists()


@pytest.mark.parametrize("body", [{"seatIds": []}, {"seatIds": [1, 1]}, {"seatIds": ["1"]}, {"seatIds": 3}, []])
def test_malformed_cancel_bodies_are_invalid(alice, seat_ids, body):
    booking = book(alice, seat_ids[:1])
    assert_error(post(alice, f"/api/bookings/{booking['reference']}/cancel", body), 400, "invalid")
    assert Seat.objects.get(pk=seat_ids[0]).status == "booked"


def test_another_holder_cannot_cancel_and_the_box_office_can(alice, bob, box_office, seat_ids):
    reference = book(alice, seat_ids[:1])["reference"]
    assert_error(post(bob, f"/api/bookings/{reference}/cancel", {}), 404, "booking_not_found")
    assert Seat.objects.get(pk=seat_ids[0]).status == "booked"
    response = post(box_office, f"/api/bookings/{reference}/cancel", {})
    assert response.status_code == 200
    row = SeatEvent.objects.get(action="cancelled")
    assert (row.holder, row.actor.username) == ("alice", "boxoffice")


def test_the_cancel_window_closes_for_the_holder_not_for_the_box_office(alice, box_office, event, seat_ids, settings):
    reference = book(alice, seat_ids[:2])["reference"]
    Event.objects.filter(pk=event.pk).update(starts_at=timezone.now() + timedelta(hours=2))
    settings.BOOKING_CANCEL_CUTOFF_SECONDS = 3 * 3600  # closes 3 h before the start: already closed
    assert_error(post(alice, f"/api/bookings/{reference}/cancel", {}), 409, "cancel_window_closed")
    assert Seat.objects.filter(pk__in=seat_ids[:2], status="booked").count() == 2
    settings.BOOKING_CANCEL_CUTOFF_SECONDS = 3600  # closes 1 h before: still open
    assert post(alice, f"/api/bookings/{reference}/cancel", {"seatIds": seat_ids[:1]}).status_code == 200
    settings.BOOKING_CANCEL_CUTOFF_SECONDS = 3 * 3600
    assert post(box_office, f"/api/bookings/{reference}/cancel", {}).status_code == 200


def test_by_default_a_holder_may_cancel_until_the_event_starts(alice, event, seat_ids):
    reference = book(alice, seat_ids[:1])["reference"]
    Event.objects.filter(pk=event.pk).update(starts_at=timezone.now() - timedelta(minutes=1))
    assert_error(post(alice, f"/api/bookings/{reference}/cancel", {}), 409, "cancel_window_closed")


def test_a_reference_drawn_twice_is_drawn_again(alice, seat_ids, monkeypatch):
    taken = book(alice, seat_ids[:1])["reference"]
    draws = iter([taken, taken, "NEWREF42"])
    monkeypatch.setattr("booking.services.bookings.new_reference", lambda: next(draws))
    assert book(alice, seat_ids[1:2])["reference"] == "NEWREF42"
    assert Booking.objects.count() == 2


def test_references_are_random_crockford_base32():
    drawn = {references.new_reference() for _ in range(2000)}
    assert len(drawn) == 2000
    assert all(REFERENCE.match(reference) for reference in drawn)
    assert references.normalize_reference("abcd-efgh") == "ABCDEFGH"
    assert references.normalize_reference("o1l1 i000") == "01111000"
    assert references.normalize_reference("ABCDEFGU") is None  # no U in Crockford's alphabet
    assert references.normalize_reference("ABC") is None


def test_the_box_office_books_for_a_holder_into_one_booking_per_event(seat_ids, make_event, make_user):
    other = list(make_event(name="Other").seats.order_by("pk").values_list("pk", flat=True))[:2]
    result = services.seats_admin_book(seat_ids=seat_ids[:3] + other, holder="walk-in")
    assert sorted(result.changed) == sorted(seat_ids[:3] + other)
    assert len(result.references) == 2
    by_event = {b.event_id: b for b in Booking.objects.all()}
    assert {b.holder for b in by_event.values()} == {"walk-in"}
    assert all(Seat.objects.get(pk=s).booking.reference in result.references for s in seat_ids[:3] + other)
    cancel = services.seats_admin_cancel(seat_ids=seat_ids[:1])
    assert cancel.changed == [seat_ids[0]]
    row = SeatEvent.objects.get(action="admin_cancelled")
    assert row.booking == Seat.objects.get(pk=seat_ids[1]).booking


def test_a_booking_admin_booked_in_several_chunks_is_one_booking(make_event, monkeypatch):
    from booking.services import admin_actions

    monkeypatch.setattr(admin_actions, "ADMIN_CHUNK", 4)
    ids = list(make_event(rows=("A",), seats_per_row=10).seats.order_by("pk").values_list("pk", flat=True))
    result = services.seats_admin_book(seat_ids=ids, holder="school")
    assert len(result.changed) == 10 and len(result.references) == 1
    assert Seat.objects.filter(booking__reference=result.references[0]).count() == 10
