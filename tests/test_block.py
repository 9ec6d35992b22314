"""Block and unblock: the API (/api/block, /api/unblock), the admin's actions, and what a block refuses."""

from __future__ import annotations

import pytest

from booking.models import Seat, SeatEvent

from .conftest import api_client_for
from .helpers import assert_error, audit_actions, expire_hold, post
from .test_admin import messages_of, run_action

pytestmark = pytest.mark.django_db


def seat_of(event, label: str) -> Seat:
    return Seat.objects.get(event=event, label=label)


@pytest.fixture
def pushed(monkeypatch):
    from booking.services import pipeline

    seen: list[dict] = []
    monkeypatch.setattr(pipeline, "publish_seat_changes", lambda seats, **kwargs: seen.extend(seats))
    return seen


def test_block_holds_seats_back_and_unblock_puts_them_on_sale(
    box_office, event, pushed, django_capture_on_commit_callbacks
):
    a1, a2 = seat_of(event, "A1"), seat_of(event, "A2")
    with django_capture_on_commit_callbacks(execute=True):
        response = post(box_office, "/api/block", {"seatIds": [a1.pk, a2.pk], "reason": "camera platform"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert [(s["label"], s["status"]) for s in body["seats"]] == [("A1", "blocked"), ("A2", "blocked")]
    assert all("reason" not in s and "blockReason" not in s for s in body["seats"])
    a1.refresh_from_db()
    assert (a1.status, a1.block_reason, a1.locked_by, a1.booked_by) == ("blocked", "camera platform", "", "")
    assert audit_actions(a1.pk) == [("blocked", "")]
    assert SeatEvent.objects.get(seat=a1).actor.username == "boxoffice"
    assert [(p["label"], p["status"]) for p in pushed] == [("A1", "blocked"), ("A2", "blocked")]

    # The public map and the counts show it unavailable, never the reason.
    seat_map = box_office.get(f"/api/events/{event.pk}/seats").json()
    assert next(s for s in seat_map if s["id"] == a1.pk)["status"] == "blocked"
    assert b"camera" not in box_office.get(f"/api/events/{event.pk}/seats").content
    assert box_office.get(f"/api/events/{event.pk}").json()["counts"]["blocked"] == 2

    pushed.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = post(box_office, "/api/unblock", {"seatId": a1.pk})
    assert response.status_code == 200, response.content
    assert [(s["label"], s["status"]) for s in response.json()["seats"]] == [("A1", "available")]
    a1.refresh_from_db()
    assert (a1.status, a1.block_reason) == ("available", "")
    assert audit_actions(a1.pk) == [("blocked", ""), ("unblocked", "")]
    assert [(p["label"], p["status"]) for p in pushed] == [("A1", "available")]


def test_a_blocked_seat_cannot_be_held_booked_or_chosen(alice, box_office, event):
    a1 = seat_of(event, "A1")
    assert post(box_office, "/api/block", {"seatId": a1.pk}).status_code == 200
    assert_error(post(alice, "/api/lock", {"seatId": a1.pk}), 409, "seat_blocked", [a1.pk])
    assert_error(post(box_office, "/api/lock", {"seatId": a1.pk, "userId": "walk-in"}), 409, "seat_blocked")
    # Booked beats blocked in the error's precedence, blocked beats held.
    assert_error(post(alice, "/api/confirm", {"seatId": a1.pk}), 409, "seat_blocked")
    assert post(alice, "/api/unlock", {"seatId": a1.pk}).status_code == 200  # nothing to release
    assert seat_of(event, "A1").status == "blocked"
    # Best available never picks it: row A's 10 seats minus A1 cannot seat 10 together, row B can.
    body = post(alice, "/api/lock", {"event": event.pk, "quantity": 10}).json()
    assert {s["row"] for s in body["seats"]} == {"B"}
    body = post(bob_of(event), "/api/lock", {"event": event.pk, "quantity": 9}).json()
    assert {s["label"] for s in body["seats"]} == {f"A{n}" for n in range(2, 11)}


def bob_of(event):
    from django.contrib.auth import get_user_model

    from booking.management.commands.create_api_user import ensure_api_user

    ensure_api_user("bob", hold_for_others=False, staff=False, password=None)
    return api_client_for(get_user_model().objects.get(username="bob"))


def test_a_held_seat_blocked_after_it_was_held_cannot_be_confirmed(alice, box_office, event):
    a1 = seat_of(event, "A1")
    assert post(alice, "/api/lock", {"seatId": a1.pk}).status_code == 200
    assert_error(post(box_office, "/api/block", {"seatId": a1.pk}), 409, "seat_locked", [a1.pk])
    expire_hold(a1.pk)  # an expired hold counts as available: it may be blocked, its expiry recorded
    assert post(box_office, "/api/block", {"seatId": a1.pk, "reason": "sight line"}).status_code == 200
    assert audit_actions(a1.pk) == [("locked", "alice"), ("expired", "alice"), ("blocked", "")]
    assert_error(post(alice, "/api/confirm", {"seatId": a1.pk}), 409, "seat_blocked")


def test_blocking_a_booked_seat_is_409_and_all_or_none(alice, box_office, event):
    a1, a2 = seat_of(event, "A1"), seat_of(event, "A2")
    assert post(alice, "/api/lock", {"seatId": a1.pk}).status_code == 200
    assert post(alice, "/api/confirm", {"seatId": a1.pk}).status_code == 200
    assert_error(post(box_office, "/api/block", {"seatIds": [a1.pk, a2.pk]}), 409, "seat_booked", [a1.pk])
    assert seat_of(event, "A2").status == "available"
    assert not SeatEvent.objects.filter(action="blocked").exists()


def test_block_needs_the_permission(alice, anonymous, event):
    a1 = seat_of(event, "A1")
    assert_error(post(alice, "/api/block", {"seatId": a1.pk}), 403, "forbidden")
    assert_error(post(alice, "/api/unblock", {"seatId": a1.pk}), 403, "forbidden")
    assert_error(post(anonymous, "/api/block", {"seatId": a1.pk}), 401, "not_authenticated")
    assert seat_of(event, "A1").status == "available"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"seatId": "1"},
        {"seatIds": []},
        {"seatIds": [1, 1]},
        {"seatId": 1, "seatIds": [2]},
        {"seatId": 1, "reason": 3},
    ],
)
def test_bad_bodies_are_400(box_office, event, body):
    assert_error(post(box_office, "/api/block", body), 400, "invalid")


def test_unknown_seats_are_404(box_office, event):
    assert_error(post(box_office, "/api/block", {"seatIds": [999999]}), 404, "seat_not_found", [999999])


def test_block_twice_and_unblock_a_free_seat_change_nothing(box_office, event):
    a1 = seat_of(event, "A1")
    assert post(box_office, "/api/block", {"seatId": a1.pk, "reason": "press"}).status_code == 200
    assert post(box_office, "/api/block", {"seatId": a1.pk, "reason": "other"}).status_code == 200
    assert seat_of(event, "A1").block_reason == "press"
    assert post(box_office, "/api/unblock", {"seatId": seat_of(event, "A2").pk}).status_code == 200
    assert SeatEvent.objects.filter(action__in=["blocked", "unblocked"]).count() == 1


def test_idempotency_key_replays_a_block(make_user, event):
    client = api_client_for(make_user("boxoffice", hold_for_others=True))
    a1 = seat_of(event, "A1")
    first = client.post("/api/block", {"seatId": a1.pk}, format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    # Unblocked meanwhile: the replay still answers the first (blocked) state and runs nothing.
    assert post(client, "/api/unblock", {"seatId": a1.pk}).status_code == 200
    again = client.post("/api/block", {"seatId": a1.pk}, format="json", HTTP_IDEMPOTENCY_KEY="b-1")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert seat_of(event, "A1").status == "available"
    assert SeatEvent.objects.filter(action="blocked").count() == 1


def test_the_sweep_never_touches_a_blocked_seat(box_office, event):
    from booking.services import holds_release_expired

    a1 = seat_of(event, "A1")
    assert post(box_office, "/api/block", {"seatId": a1.pk}).status_code == 200
    holds_release_expired()
    assert seat_of(event, "A1").status == "blocked"
    assert audit_actions(a1.pk) == [("blocked", "")]


# --- The admin's actions -------------------------------------------------------------


def test_admin_block_asks_for_a_reason_and_skips_what_is_not_free(staff_client, staff, alice, event, pushed):
    free, held = seat_of(event, "B1"), seat_of(event, "B2")
    assert post(alice, "/api/lock", {"seatId": held.pk}).status_code == 200
    first, response = run_action(staff_client, "block_seats", [free, held], extra={"reason": "  technical  "})
    assert "Block seats" in first.text and 'name="reason"' in first.text
    text = " ".join(messages_of(response))
    assert "1 seat blocked." in text and "B2: not available: held by alice" in text
    free.refresh_from_db()
    assert (free.status, free.block_reason) == ("blocked", "technical")
    assert SeatEvent.objects.get(seat=free, action="blocked").actor == staff
    assert seat_of(event, "B2").status == "locked"

    first, response = run_action(staff_client, "unblock_seats", [free, held])
    text = " ".join(messages_of(response))
    assert "1 seat unblocked (available again)." in text and "B2: not blocked" in text
    free.refresh_from_db()
    assert (free.status, free.block_reason) == ("available", "")
    assert audit_actions(free.pk) == [("blocked", ""), ("unblocked", "")]


def test_admin_block_is_not_offered_without_the_permission(client, make_user, event):
    from django.contrib.auth.models import Permission

    user = make_user("clerk", staff=True, password="pw")
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_seat", "change_seat"]))
    client.force_login(user)
    page = client.get("/admin/booking/seat/")
    assert page.status_code == 200
    assert b'value="block_seats"' not in page.content and b'value="unblock_seats"' not in page.content
    free = seat_of(event, "C1")
    client.post("/admin/booking/seat/", {"action": "block_seats", "_selected_action": [free.pk], "confirm": "yes"})
    assert seat_of(event, "C1").status == "available"
    assert not SeatEvent.objects.filter(action="blocked").exists()
