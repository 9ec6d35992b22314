"""A holder's name is 1 to 150 printable characters, at the API (400 invalid), in the admin
(a form error) and in the commands; and a holder already stored with a line break never
forges a log line."""

from __future__ import annotations

import logging

import pytest
from django.core.management import CommandError, call_command

from booking import services
from booking.holders import HOLDER_MAX_LENGTH, holder_problem, loggable
from booking.models import Seat, SeatEvent, SeatStatus

from .helpers import assert_error, expire_hold, post

pytestmark = pytest.mark.django_db

BAD_HOLDERS = [
    "eve\nSeat A1 (id 1) of event 1 released: hold by alice expired at 2027-01-01T00:00:00+00:00",
    "carriage\rreturn",
    "tab\there",
    "escape\x1b[31mred",
    "bell\x07",
    "next\x85line",  # (at either end DRF trims it, as every whitespace)
    "line\u2028separator",
    "paragraph\u2029separator",
    "zero\u200bwidth",  # Cf, invisible: two holders that look the same
    "right-to-left\u202eoverride",
    "\ufeffbom",
    "x" * (HOLDER_MAX_LENGTH + 1),
]
GOOD_HOLDERS = ["alice", "walk-in 17", "ünïcødé ✓", "名前", "o'brien", "x" * HOLDER_MAX_LENGTH]


@pytest.mark.parametrize("holder", BAD_HOLDERS, ids=[ascii(h)[:30] for h in BAD_HOLDERS])
@pytest.mark.parametrize("path", ["/api/lock", "/api/confirm", "/api/unlock"])
def test_a_write_for_a_holder_that_is_no_printable_name_is_400(box_office, seat_ids, path, holder):
    body = assert_error(post(box_office, path, {"seatId": seat_ids[0], "userId": holder}), 400, "invalid")
    assert "userId" in body["detail"]
    assert not SeatEvent.objects.exists()
    assert not Seat.objects.exclude(status=SeatStatus.AVAILABLE).exists()


@pytest.mark.parametrize("holder", BAD_HOLDERS, ids=[ascii(h)[:30] for h in BAD_HOLDERS])
def test_best_available_for_a_holder_that_is_no_printable_name_is_400(box_office, event, holder):
    body = assert_error(
        post(box_office, "/api/lock", {"event": event.pk, "quantity": 2, "userId": holder}), 400, "invalid"
    )
    assert "userId" in body["detail"]
    assert not SeatEvent.objects.exists()
    assert not Seat.objects.exclude(status=SeatStatus.AVAILABLE).exists()


@pytest.mark.parametrize("holder", BAD_HOLDERS, ids=[ascii(h)[:30] for h in BAD_HOLDERS])
@pytest.mark.parametrize("path", ["/api/me/seats", "/api/me/bookings"])
def test_a_read_for_such_a_holder_is_400(box_office, path, holder):
    assert_error(box_office.get(path, {"userId": holder}), 400, "invalid")


def test_the_refusal_comes_before_the_right_to_act_for_others(alice, seat_ids):
    """Without hold_for_others it was a 403 naming the holder (line break and all) in its detail."""
    body = assert_error(post(alice, "/api/lock", {"seatId": seat_ids[0], "userId": "a\nb"}), 400, "invalid")
    assert "printable" in body["detail"]


def test_a_lone_surrogate_in_a_latin1_body_is_400(box_office, seat_ids):
    """orjson refuses one in UTF-8; a body in another charset was parsed by the json module, which kept it."""
    body = ('{"seatId": ' + str(seat_ids[0]) + ', "userId": "a\\ud800b"}').encode("latin-1")
    response = box_office.post("/api/lock", body, content_type="application/json; charset=latin-1")
    assert_error(response, 400, "invalid")
    assert not SeatEvent.objects.exists()


@pytest.mark.parametrize("holder", GOOD_HOLDERS)
def test_printable_names_of_up_to_150_characters_are_holders(box_office, seat_ids, holder):
    response = post(box_office, "/api/lock", {"seatId": seat_ids[0], "userId": holder})
    assert response.status_code == 200, response.content
    assert Seat.objects.get(pk=seat_ids[0]).locked_by == holder


def test_the_rule_itself():
    assert holder_problem("alice") is None
    assert holder_problem("") is not None
    assert holder_problem("\ud800") is not None  # a lone surrogate
    assert all(holder_problem(name) for name in BAD_HOLDERS)


# --- The admin's "book for a holder" ---------------------------------------------------------


@pytest.mark.parametrize("holder", ["walk-in\nforged", "x" * 151, "tab\tbed"])
def test_the_admin_refuses_such_a_holder_with_a_form_error(staff_client, event, holder):
    seat = event.seats.get(label="A1")
    url = "/admin/booking/seat/"
    form = {"action": "book_for_holder", "_selected_action": [seat.pk], "index": 0, "select_across": 0}
    assert staff_client.post(url, form).status_code == 200  # the confirmation page
    response = staff_client.post(url, {**form, "confirm": "yes", "holder": holder})
    assert response.status_code == 200
    assert response.context["form"].errors["holder"], response.context["form"].errors
    seat.refresh_from_db()
    assert seat.status == SeatStatus.AVAILABLE and not SeatEvent.objects.exists()


# --- Commands -------------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["a\nb", "x" * 151, "", "tab\tname"])
def test_create_api_user_refuses_a_username_that_is_no_holder(username):
    from django.contrib.auth import get_user_model

    with pytest.raises(CommandError):
        call_command("create_api_user", username)
    assert not get_user_model().objects.exists()


# --- Log lines: a bad holder already in the database ------------------------------------------


def _store_expired_hold(seat_id: int, holder: str) -> None:
    """A hold as an older version (or a hand-written row) may have stored it."""
    services.seats_lock(seat_ids=[seat_id], holder="placeholder", actor=None)
    Seat.objects.filter(pk=seat_id).update(locked_by=holder)
    expire_hold(seat_id)


FORGER = "eve\nSeat Z9 (id 1) of event 1 released: hold by alice expired at 2027-01-01T00:00:00+00:00"


def _expiry_lines(caplog) -> list[str]:
    return [line for r in caplog.records if r.name == "booking.expiry" for line in r.getMessage().splitlines()]


def test_the_sweep_writes_one_line_for_a_holder_with_a_line_break(seat_ids, caplog):
    _store_expired_hold(seat_ids[0], FORGER)
    with caplog.at_level(logging.INFO, logger="booking.expiry"):
        assert services.holds_release_expired() == 1
    (line,) = _expiry_lines(caplog)
    assert line.startswith("Seat A1 ") and "hold by eve\\nSeat Z9" in line


def test_a_lock_taking_over_such_a_hold_writes_one_line(seat_ids, caplog):
    _store_expired_hold(seat_ids[0], FORGER)
    with caplog.at_level(logging.INFO, logger="booking.expiry"):
        services.seats_lock(seat_ids=[seat_ids[0]], holder="bob", actor=None)
    (line,) = _expiry_lines(caplog)
    assert "hold by eve\\nSeat Z9" in line


def test_the_admin_booking_over_such_a_hold_writes_one_line(seat_ids, caplog):
    _store_expired_hold(seat_ids[0], FORGER)
    with caplog.at_level(logging.INFO, logger="booking.expiry"):
        services.seats_admin_book(seat_ids=[seat_ids[0]], holder="walk-in", actor=None)
    (line,) = _expiry_lines(caplog)
    assert "hold by eve\\nSeat Z9" in line


def test_the_admin_booking_service_refuses_such_a_holder(seat_ids):
    from booking.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        services.seats_admin_book(seat_ids=[seat_ids[0]], holder="walk-in\nforged", actor=None)
    assert not SeatEvent.objects.exists()


def test_loggable_escapes_only_what_is_not_printable():
    assert loggable("ünïcødé ✓ alice") == "ünïcødé ✓ alice"
    assert loggable("a\nb\rc\x1bd\u2028e") == "a\\nb\\rc\\x1bd\\u2028e"
    assert loggable("\ud800") == "\\ud800"
