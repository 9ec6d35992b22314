"""A crash of the app server loses nothing: holds and bookings written through
one server process are intact after it is killed with SIGKILL and a new one
starts on the same database, and the holds still expire on time. Runs on
PostgreSQL and on SQLite (WAL)."""

from __future__ import annotations

import signal
import time
from datetime import datetime

import pytest
import requests

from booking.models import SeatAction, SeatEvent

from .processes import start_web_server as start_server

HOLD_SECONDS = 5


def post(base: str, path: str, token: str, body: dict) -> requests.Response:
    return requests.post(f"{base}{path}", json=body, headers={"Authorization": f"Token {token}"}, timeout=5)


def get(base: str, path: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Token {token}"} if token else {}
    return requests.get(f"{base}{path}", headers=headers, timeout=5)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.django_db(transaction=True)
def test_holds_and_bookings_survive_sigkill_and_then_expire_on_time(make_event, make_user):
    event = make_event(rows=("A",), seats_per_row=4, hold_seconds=HOLD_SECONDS)
    a1, a2, a3, a4 = event.seats.order_by("number").values_list("pk", flat=True)
    alice = make_user("alice").auth_token.key
    bob = make_user("bob").auth_token.key

    first, base = start_server()
    servers = [first]
    try:
        assert post(base, "/api/lock", alice, {"seatIds": [a1, a2]}).status_code == 200
        booked = post(base, "/api/confirm", alice, {"seatId": a1})
        assert booked.status_code == 200
        bob_hold = post(base, "/api/lock", bob, {"seatId": a3})
        assert bob_hold.status_code == 200
        alice_before = get(base, "/api/me/seats", alice).json()
        bob_before = get(base, "/api/me/seats", bob).json()

        first.signal_group(signal.SIGKILL)
        assert first.wait(timeout=5) == -signal.SIGKILL
        with pytest.raises(requests.ConnectionError):
            get(base, "/api/health")

        second, base = start_server()
        servers.append(second)

        # Everything the first server answered 200 for is there, unchanged.
        assert get(base, "/api/me/seats", alice).json() == alice_before
        assert get(base, "/api/me/seats", bob).json() == bob_before
        statuses = {seat["id"]: seat["status"] for seat in get(base, f"/api/events/{event.pk}/seats").json()}
        assert statuses == {a1: "booked", a2: "locked", a3: "locked", a4: "available"}
        assert get(base, f"/api/events/{event.pk}").json()["counts"] == {
            "available": 1,
            "locked": 2,
            "booked": 1,
            "blocked": 0,
        }
        # The holds are still enforced, and the booking answers a retried confirm the same way.
        taken = post(base, "/api/lock", bob, {"seatId": a2})
        assert (taken.status_code, taken.json()["code"]) == (409, "seat_locked")
        assert post(base, "/api/confirm", alice, {"seatId": a1}).json() == booked.json()

        # The holds expire when they said they would, not later (reads release them; no worker runs).
        expires_at = parse_time(bob_hold.json()["lockExpiresAt"])
        assert time.time() < expires_at - 0.5, "the restart took longer than the hold"
        time.sleep(max(0.0, expires_at + 0.3 - time.time()))
        statuses = {seat["id"]: seat["status"] for seat in get(base, f"/api/events/{event.pk}/seats").json()}
        assert statuses == {a1: "booked", a2: "available", a3: "available", a4: "available"}
        expired = set(SeatEvent.objects.filter(action=SeatAction.EXPIRED).values_list("seat_id", "holder"))
        assert expired == {(a2, "alice"), (a3, "bob")}
        assert post(base, "/api/lock", bob, {"seatId": a2}).status_code == 200
        too_late = post(base, "/api/confirm", alice, {"seatId": a2})
        assert (too_late.status_code, too_late.json()["code"]) == (409, "hold_expired")
    finally:
        for server in servers:
            server.stop()
