"""A crash under load loses no booking: clients book through the production web server (the Procfile's web: line)
on PostgreSQL, the server is killed with SIGKILL mid-run and restarted on the
same database, the clients go on. Afterwards every booking whose confirm got a
200 is booked to that holder, no seat has two holders, and the audit trail,
replayed seat by seat, ends in exactly the state of the seat rows."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter, defaultdict

import pytest
import requests

from booking.models import Seat, SeatEvent

from .processes import start_web_server

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.slow]

CLIENTS = 8
PHASE_SECONDS = 2.5


class Clients:
    """Threads that book until told to stop, each as its own user, against whichever server is current."""

    def __init__(self, tokens: dict[str, str], seat_ids: list[int]):
        self.tokens, self.seat_ids = tokens, seat_ids
        self.base = ""
        self.stop = threading.Event()
        self.confirmed: list[tuple[str, int]] = []  # (holder, seat) for every confirm answered 200
        self.outcomes: Counter = Counter()
        self.unexpected: list[str] = []
        self._lock = threading.Lock()

    def run(self, holder: str, seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.tokens[holder]}"
        while not self.stop.is_set():
            # Half the time a seat many clients want, so holds and bookings contend.
            seat = rng.choice(self.seat_ids[:40] if rng.random() < 0.5 else self.seat_ids)
            base = self.base
            try:
                lock = session.post(f"{base}/api/lock", json={"seatId": seat}, timeout=5)
                self._count("lock", lock)
                if lock.status_code != 200:
                    continue
                if rng.random() < 0.15:  # some give their hold back
                    self._count("unlock", session.post(f"{base}/api/unlock", json={"seatId": seat}, timeout=5))
                    continue
                confirm = session.post(f"{base}/api/confirm", json={"seatId": seat}, timeout=5)
                self._count("confirm", confirm)
                if confirm.status_code == 200:
                    with self._lock:
                        self.confirmed.append((holder, seat))
            except requests.RequestException:
                # The server died under this request: its outcome is unknown, which is allowed.
                with self._lock:
                    self.outcomes["connection error"] += 1
                session = requests.Session()
                session.headers["Authorization"] = f"Token {self.tokens[holder]}"
                time.sleep(0.05)

    def _count(self, op: str, response: requests.Response) -> None:
        with self._lock:
            self.outcomes[f"{op} {response.status_code}"] += 1
            if response.status_code not in (200, 409, 503):
                self.unexpected.append(f"{op}: {response.status_code} {response.text[:200]}")


def replay(actions: list[tuple[str, str]]) -> tuple[str, str]:
    """A seat's audit trail, oldest first, replayed from available: its (status, holder) at the end.

    Fails on a step that the rules forbid (e.g. a lock of a seat someone else holds, a second booking).
    """
    status, holder = "available", ""
    for action, who in actions:
        if action == "locked":
            assert status == "available", f"locked by {who} while {status} by {holder}: {actions}"
            status, holder = "locked", who
        elif action == "extended":
            assert (status, holder) == ("locked", who), actions
        elif action in ("unlocked", "expired", "admin_released"):
            assert (status, holder) == ("locked", who), actions
            status, holder = "available", ""
        elif action in ("booked", "admin_booked"):
            assert status != "booked", f"booked twice: {actions}"
            assert action == "admin_booked" or (status, holder) == ("locked", who), actions
            status, holder = "booked", who
        elif action in ("cancelled", "admin_cancelled"):
            assert status == "booked", actions
            status, holder = "available", ""
        else:
            raise AssertionError(f"unknown action {action}")
    return status, holder


def test_sigkill_mid_run_loses_no_confirmed_booking_and_the_audit_trail_agrees(make_event, make_user):
    event = make_event(rows=("A", "B", "C", "D"), seats_per_row=50, hold_seconds=60)
    seat_ids = list(event.seats.order_by("pk").values_list("pk", flat=True))
    tokens = {f"crash{i}": make_user(f"crash{i}").auth_token.key for i in range(CLIENTS)}
    clients = Clients(tokens, seat_ids)

    first, clients.base = start_web_server(workers=2, threads=4)
    servers = [first]
    threads = [threading.Thread(target=clients.run, args=(holder, i)) for i, holder in enumerate(tokens)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(PHASE_SECONDS)
        before_kill = sum(clients.outcomes.values())
        confirmed_before_kill = len(clients.confirmed)
        first.signal_group(signal.SIGKILL)  # mid-run: requests are in flight
        assert first.wait(timeout=10) == -signal.SIGKILL

        second, clients.base = start_web_server(workers=2, threads=4)
        servers.append(second)
        time.sleep(PHASE_SECONDS)
    finally:
        clients.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        for server in servers:
            server.stop()

    assert before_kill > 20 and confirmed_before_kill > 5, clients.outcomes
    assert len(clients.confirmed) > confirmed_before_kill, "no booking after the restart"
    assert clients.outcomes["lock 200"] > 0 and clients.outcomes["confirm 200"] > 0, clients.outcomes
    assert clients.outcomes["connection error"] > 0, "the kill hit no request"
    assert not clients.unexpected, clients.unexpected[:5]

    seats = {row["id"]: row for row in Seat.objects.filter(event=event).values()}
    # Every confirm answered 200 is booked to that holder, and no seat was confirmed to two holders.
    holders_per_seat = defaultdict(set)
    for holder, seat in clients.confirmed:
        holders_per_seat[seat].add(holder)
        assert (seats[seat]["status"], seats[seat]["booked_by"]) == ("booked", holder), seats[seat]
    assert all(len(h) == 1 for h in holders_per_seat.values()), holders_per_seat

    # The audit trail, replayed per seat, ends where the seat rows are.
    trail = defaultdict(list)
    for seat_id, action, holder in (
        SeatEvent.objects.filter(event=event).order_by("created_at", "id").values_list("seat_id", "action", "holder")
    ):
        trail[seat_id].append((action, holder))
    for seat_id, seat in seats.items():
        status, holder = replay(trail[seat_id])
        shown_holder = {"available": "", "locked": seat["locked_by"], "booked": seat["booked_by"]}[seat["status"]]
        assert (status, holder) == (seat["status"], shown_holder), (seat_id, trail[seat_id], seat)
    booked_rows = Counter(seat_id for seat_id, actions in trail.items() for action, _ in actions if action == "booked")
    assert set(booked_rows.values()) <= {1}


def test_sigkill_after_a_confirm_committed_but_before_its_answer_was_read(make_event, make_user):
    """The client's retry with the same Idempotency-Key gets the same booking; no second one exists."""
    import json
    import socket
    from urllib.parse import urlsplit

    from booking.models import Booking

    event = make_event(rows=("A",), seats_per_row=5, hold_seconds=60)
    seat_ids = list(event.seats.order_by("pk").values_list("pk", flat=True))[:2]
    token = make_user("payer").auth_token.key
    headers = {"Authorization": f"Token {token}", "Idempotency-Key": "order-4711"}

    server, base = start_web_server(workers=1, threads=2)
    servers = [server]
    try:
        assert requests.post(
            f"{base}/api/lock", json={"seatIds": seat_ids}, headers=headers | {"Idempotency-Key": "hold"}
        ).ok
        # The confirm goes out on a raw socket whose answer is never read.
        body = json.dumps({"seatIds": seat_ids, "orderId": "4711"}).encode()
        url = urlsplit(base)
        request = (
            f"POST /api/confirm HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: Token {token}\r\nIdempotency-Key: order-4711\r\n\r\n"
        ).encode() + body
        unread = socket.create_connection((url.hostname, url.port), timeout=5)
        unread.sendall(request)
        deadline = time.monotonic() + 10
        while not Booking.objects.exists():  # committed: the booking is visible to others
            assert time.monotonic() < deadline, "the confirm did not commit"
            time.sleep(0.01)
        server.signal_group(signal.SIGKILL)
        assert server.wait(timeout=10) == -signal.SIGKILL
        unread.close()

        second, base = start_web_server(workers=1, threads=2)
        servers.append(second)
        retry = requests.post(
            f"{base}/api/confirm", json={"seatIds": seat_ids, "orderId": "4711"}, headers=headers, timeout=10
        )
    finally:
        for started in servers:
            started.stop()

    assert retry.status_code == 200, retry.text
    assert retry.headers["Idempotent-Replayed"] == "true"
    (booking,) = Booking.objects.all()
    assert retry.json()["booking"]["reference"] == booking.reference
    assert booking.order_id == "4711"
    assert SeatEvent.objects.filter(action="booked").count() == 2
