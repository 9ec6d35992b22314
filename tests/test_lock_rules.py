"""The HTTP API's rules for lock, confirm and unlock: status codes, bodies, rows, audit."""

from datetime import timedelta

import pytest
from django.db.models.functions import Now

from booking.models import Seat, SeatEvent, SeatStatus

from .helpers import assert_error, audit_actions, expire_hold, post, seat

pytestmark = pytest.mark.django_db


def test_lock_holds_a_free_seat_and_reports_the_database_expiry(alice, seat_ids):
    response = post(alice, "/api/lock", {"seatId": seat_ids[0]})
    assert response.status_code == 200
    body = response.json()
    assert body["holder"] == "alice"
    assert 59 <= body["expiresInSeconds"] <= 60
    [payload] = body["seats"]
    assert payload["id"] == seat_ids[0]
    assert payload["status"] == "locked"
    assert payload["lockExpiresAt"] == body["lockExpiresAt"]
    assert set(payload) == {
        "id",
        "event",
        "label",
        "section",
        "row",
        "number",
        "category",
        "accessible",
        "status",
        "lockExpiresAt",
        "version",
    }
    row = seat(seat_ids[0])
    assert (row.status, row.locked_by) == ("locked", "alice")
    assert row.lock_expires_at - row.locked_at == timedelta(seconds=60)
    assert audit_actions(seat_ids[0]) == [("locked", "alice")]
    assert SeatEvent.objects.get(seat_id=seat_ids[0]).actor.username == "alice"


def test_lock_several_seats_is_all_or_nothing(alice, bob, seat_ids):
    assert post(bob, "/api/lock", {"seatId": seat_ids[2]}).status_code == 200
    response = post(alice, "/api/lock", {"seatIds": [seat_ids[0], seat_ids[1], seat_ids[2]]})
    assert_error(response, 409, "seat_locked", [seat_ids[2]])
    assert Seat.objects.filter(pk__in=seat_ids[:2], status=SeatStatus.AVAILABLE).count() == 2
    assert not SeatEvent.objects.filter(holder="alice").exists()


def test_lock_of_a_booked_seat_is_refused(alice, bob, seat_ids):
    post(bob, "/api/lock", {"seatId": seat_ids[0]})
    post(bob, "/api/confirm", {"seatId": seat_ids[0]})
    assert_error(post(alice, "/api/lock", {"seatId": seat_ids[0]}), 409, "seat_booked", [seat_ids[0]])
    assert_error(post(bob, "/api/lock", {"seatId": seat_ids[0]}), 409, "seat_booked", [seat_ids[0]])


def test_relock_by_the_same_holder_renews_the_hold(alice, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    Seat.objects.filter(pk=seat_ids[0]).update(lock_expires_at=Now() + timedelta(seconds=5))
    response = post(alice, "/api/lock", {"seatId": seat_ids[0]})
    assert response.status_code == 200
    assert response.json()["expiresInSeconds"] > 55
    assert audit_actions(seat_ids[0]) == [("locked", "alice"), ("extended", "alice")]


def test_renewal_is_capped_at_the_ceiling(alice, seat_ids, settings):
    settings.BOOKING_MAX_HOLD_SECONDS = 90
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    # The hold was first taken 80 s ago: a renewal may reach only 10 s from now.
    Seat.objects.filter(pk=seat_ids[0]).update(
        locked_at=Now() - timedelta(seconds=80), lock_expires_at=Now() + timedelta(seconds=1)
    )
    body = post(alice, "/api/lock", {"seatId": seat_ids[0]}).json()
    assert 8 <= body["expiresInSeconds"] <= 10.5
    row = seat(seat_ids[0])
    assert row.lock_expires_at - row.locked_at == timedelta(seconds=90)


def test_default_ceiling_is_ten_holds(alice, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    Seat.objects.filter(pk=seat_ids[0]).update(
        locked_at=Now() - timedelta(seconds=600), lock_expires_at=Now() + timedelta(seconds=1)
    )
    body = post(alice, "/api/lock", {"seatId": seat_ids[0]}).json()
    assert body["expiresInSeconds"] <= 1.5  # 10 x 60 s already used up: no more time


def test_an_expired_hold_is_free_for_anyone(alice, bob, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    expire_hold(seat_ids[0])
    listed = alice.get(f"/api/seats?event={seat(seat_ids[0]).event_id}&status=available").json()
    assert seat_ids[0] in [s["id"] for s in listed]
    response = post(bob, "/api/lock", {"seatId": seat_ids[0]})
    assert response.status_code == 200
    assert seat(seat_ids[0]).locked_by == "bob"
    assert audit_actions(seat_ids[0]) == [("locked", "alice"), ("expired", "alice"), ("locked", "bob")]


def test_confirm_books_held_seats(alice, seat_ids):
    post(alice, "/api/lock", {"seatIds": seat_ids[:2]})
    response = post(alice, "/api/confirm", {"seatIds": seat_ids[:2]})
    assert response.status_code == 200
    body = response.json()
    assert body["holder"] == "alice"
    assert "lockExpiresAt" not in body
    assert [s["status"] for s in body["seats"]] == ["booked", "booked"]
    for seat_id in seat_ids[:2]:
        row = seat(seat_id)
        assert (row.status, row.booked_by, row.locked_by, row.lock_expires_at) == ("booked", "alice", "", None)
        assert audit_actions(seat_id) == [("locked", "alice"), ("booked", "alice")]


def test_confirm_again_is_a_safe_retry(alice, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    first = post(alice, "/api/confirm", {"seatId": seat_ids[0]})
    again = post(alice, "/api/confirm", {"seatId": seat_ids[0]})
    assert again.status_code == 200
    assert again.json() == first.json()
    assert audit_actions(seat_ids[0]) == [("locked", "alice"), ("booked", "alice")]


def test_confirm_of_someone_elses_booking_is_refused(alice, bob, seat_ids):
    post(bob, "/api/lock", {"seatId": seat_ids[0]})
    post(bob, "/api/confirm", {"seatId": seat_ids[0]})
    assert_error(post(alice, "/api/confirm", {"seatId": seat_ids[0]}), 409, "seat_booked", [seat_ids[0]])


def test_confirm_without_a_hold_is_refused(alice, bob, seat_ids):
    assert_error(post(alice, "/api/confirm", {"seatId": seat_ids[0]}), 409, "not_locked_by_you", [seat_ids[0]])
    post(bob, "/api/lock", {"seatId": seat_ids[1]})
    assert_error(post(alice, "/api/confirm", {"seatId": seat_ids[1]}), 409, "not_locked_by_you", [seat_ids[1]])
    assert seat(seat_ids[1]).status == "locked"


def test_confirm_after_expiry_gets_hold_expired(alice, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    expire_hold(seat_ids[0])
    assert_error(post(alice, "/api/confirm", {"seatId": seat_ids[0]}), 409, "hold_expired", [seat_ids[0]])
    assert seat(seat_ids[0]).status != "booked"


def test_confirm_after_the_sweep_released_it_still_says_hold_expired(alice, bob, seat_ids):
    from booking.services import holds_release_expired

    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    expire_hold(seat_ids[0])
    assert holds_release_expired() == 1
    assert_error(post(alice, "/api/confirm", {"seatId": seat_ids[0]}), 409, "hold_expired", [seat_ids[0]])
    # ...and after someone else took it over, too.
    post(bob, "/api/lock", {"seatId": seat_ids[0]})
    assert_error(post(alice, "/api/confirm", {"seatId": seat_ids[0]}), 409, "hold_expired", [seat_ids[0]])
    assert seat(seat_ids[0]).locked_by == "bob"


def test_confirm_is_all_or_nothing(alice, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    assert_error(post(alice, "/api/confirm", {"seatIds": seat_ids[:2]}), 409, "not_locked_by_you", [seat_ids[1]])
    assert seat(seat_ids[0]).status == "locked"


def test_unlock_releases_own_holds(alice, seat_ids):
    post(alice, "/api/lock", {"seatIds": seat_ids[:2]})
    response = post(alice, "/api/unlock", {"seatIds": seat_ids[:2]})
    assert response.status_code == 200
    assert [s["status"] for s in response.json()["seats"]] == ["available", "available"]
    assert Seat.objects.filter(pk__in=seat_ids[:2], status="available", locked_by="").count() == 2
    assert audit_actions(seat_ids[0]) == [("locked", "alice"), ("unlocked", "alice")]


def test_unlock_of_a_free_seat_changes_nothing(alice, seat_ids):
    response = post(alice, "/api/unlock", {"seatId": seat_ids[0]})
    assert response.status_code == 200
    assert response.json()["seats"][0]["status"] == "available"
    assert not SeatEvent.objects.exists()


def test_unlock_of_someone_elses_hold_is_refused(alice, bob, seat_ids):
    post(bob, "/api/lock", {"seatId": seat_ids[0]})
    post(alice, "/api/lock", {"seatId": seat_ids[1]})
    assert_error(post(alice, "/api/unlock", {"seatIds": seat_ids[:2]}), 409, "not_locked_by_you", [seat_ids[0]])
    assert seat(seat_ids[1]).locked_by == "alice"  # all or nothing


def test_unlock_of_a_booking_is_refused(alice, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    post(alice, "/api/confirm", {"seatId": seat_ids[0]})
    assert_error(post(alice, "/api/unlock", {"seatId": seat_ids[0]}), 409, "seat_booked", [seat_ids[0]])
    assert seat(seat_ids[0]).status == "booked"


def test_hold_limit_per_event(alice, make_event, seat_ids, settings):
    settings.BOOKING_MAX_HOLDS = 3
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:2]}).status_code == 200
    assert_error(post(alice, "/api/lock", {"seatIds": seat_ids[2:4]}), 409, "too_many_holds", seat_ids[2:4])
    assert post(alice, "/api/lock", {"seatId": seat_ids[2]}).status_code == 200
    # Renewing what one holds does not count twice; another event has its own limit.
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:3]}).status_code == 200
    other = make_event(name="Other")
    other_ids = list(other.seats.values_list("pk", flat=True)[:3])
    assert post(alice, "/api/lock", {"seatIds": other_ids}).status_code == 200
    # Bookings do not count as holds; expired holds neither.
    post(alice, "/api/confirm", {"seatIds": seat_ids[:3]})
    assert post(alice, "/api/lock", {"seatIds": seat_ids[3:6]}).status_code == 200
    expire_hold(*seat_ids[3:6])
    assert post(alice, "/api/lock", {"seatIds": seat_ids[6:9]}).status_code == 200


def test_unknown_seats_are_404_and_change_nothing(alice, seat_ids):
    missing = seat_ids[-1] + 1000
    assert_error(post(alice, "/api/lock", {"seatIds": [seat_ids[0], missing]}), 404, "seat_not_found", [missing])
    assert seat(seat_ids[0]).status == "available"
    assert_error(post(alice, "/api/confirm", {"seatId": missing}), 404, "seat_not_found", [missing])
    assert_error(post(alice, "/api/unlock", {"seatId": missing}), 404, "seat_not_found", [missing])


def test_the_most_important_error_wins_and_names_its_seats(alice, bob, seat_ids):
    post(bob, "/api/lock", {"seatIds": seat_ids[:2]})
    post(bob, "/api/confirm", {"seatId": seat_ids[0]})
    body = assert_error(post(alice, "/api/lock", {"seatIds": seat_ids[:3]}), 409, "seat_booked", [seat_ids[0]])
    assert str(seat_ids[0]) in body["detail"]


def test_a_seat_of_a_booking_shows_no_expiry(alice, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    post(alice, "/api/confirm", {"seatId": seat_ids[0]})
    [payload] = alice.get(f"/api/seats?event={seat(seat_ids[0]).event_id}&status=booked").json()
    assert payload["lockExpiresAt"] is None
