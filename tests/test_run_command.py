"""The README's run command (`make run`) works on a fresh temporary SQLite
database with no servers: it migrates, loads the demo and prints its tokens,
serves the API, and one Ctrl-C (SIGINT) stops everything within seconds.
Running it again keeps the data. Also: the demo loader is idempotent."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest
import requests
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from websockets.sync.client import connect as ws_connect

from booking.layouts import read_layout
from booking.management.commands.load_demo import DEMO_LAYOUT
from booking.models import Event, Seat

from .processes import REPO, Process, child_env, free_port, wait_for_http

STOP_WITHIN_SECONDS = 8  # honcho gives its processes 5 s before it kills them
#: The demo event's seats: the sample theatre's.
DEMO_SEATS = len(read_layout(DEMO_LAYOUT.read_bytes()))


def start_make_run(var_dir, port: int) -> Process:
    env = child_env(
        BOOKING_VAR_DIR=str(var_dir),
        PORT=str(port),
        # A fresh machine: no database, broker or Redis configured.
        DATABASE_URL=None,
        CELERY_BROKER_URL=None,
        REDIS_URL=None,
        CACHE_URL=None,
        # Short holds and sweeps, so the test sees the worker release one.
        BOOKING_HOLD_SECONDS="2",
        BOOKING_SWEEP_SECONDS="1",
    )
    return Process(["make", "run"], env=env, cwd=REPO)


def tokens_printed(output: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(alice|bob|boxoffice)\s+\S+\s+([0-9a-f]{40})", output, re.MULTILINE))


def ctrl_c(run: Process) -> float:
    """SIGINT to the foreground process group, as a terminal's Ctrl-C; returns how long it took to exit."""
    pids = [int(pid) for pid in re.findall(r"started \(pid=(\d+)\)", run.output)]
    assert len(pids) == 4, run.output  # web, worker, webhooks, beat
    started = time.monotonic()
    run.signal_group(signal.SIGINT)
    run.wait(timeout=STOP_WITHIN_SECONDS + 5)
    took = time.monotonic() - started
    for pid in pids:  # no process left behind
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    return took


def test_make_run_serves_the_demo_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = start_make_run(tmp_path / "var", port)
    try:
        wait_for_http(f"{base}/api/health", timeout=90, process=run)
        run.wait_for_output(r"celery@\S+ ready\.", timeout=30)
        run.wait_for_output(r"celery beat v\S+ .* is starting", timeout=30)
        tokens = tokens_printed(run.output)
        assert set(tokens) == {"alice", "bob", "boxoffice"}

        events = requests.get(f"{base}/api/events", timeout=5).json()
        assert [e["name"] for e in events] == ["Demo concert"]
        seats = requests.get(f"{base}/api/events/{events[0]['id']}/seats", timeout=5).json()
        assert len(seats) == DEMO_SEATS
        headers = {"Authorization": f"Token {tokens['alice']}"}
        locked = requests.post(f"{base}/api/lock", json={"seatId": seats[0]["id"]}, headers=headers, timeout=5)
        assert locked.status_code == 200
        assert locked.json()["seats"][0]["status"] == "locked"
        booked = requests.post(f"{base}/api/confirm", json={"seatId": seats[0]["id"]}, headers=headers, timeout=5)
        assert booked.status_code == 200

        # The seat-map page and its WebSocket are served by the same embedded server.
        assert "seat-map-config" in requests.get(f"{base}/events/{events[0]['id']}/", timeout=5).text
        socket = ws_connect(f"ws://127.0.0.1:{port}/ws/events/{events[0]['id']}/", origin=base, open_timeout=10)

        # bob's hold, never read again, is released by the embedded worker on beat's schedule.
        bob = {"Authorization": f"Token {tokens['bob']}"}
        with socket:
            assert json.loads(socket.recv(timeout=10))["type"] == "snapshot"
            held = requests.post(f"{base}/api/lock", json={"seatId": seats[1]["id"]}, headers=bob, timeout=5)
            assert held.status_code == 200
            pushed = json.loads(socket.recv(timeout=5))
            assert pushed["type"] == "seats"
            assert [(seat["id"], seat["status"]) for seat in pushed["seats"]] == [(seats[1]["id"], "locked")]
        run.wait_for_output(
            rf"worker.*Seat {seats[1]['label']} \(id {seats[1]['id']}\) of event {events[0]['id']} released: hold by bob",
            timeout=2 + 1 + 3,
        )

        took = ctrl_c(run)
        assert took < STOP_WITHIN_SECONDS, f"stopping took {took:.1f}s"
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/api/health", timeout=2)
    finally:
        run.stop()

    # Again, on the same var/: the booking is kept, the demo is not duplicated, the tokens still work.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    again = start_make_run(tmp_path / "var", port)
    try:
        wait_for_http(f"{base}/api/health", timeout=90, process=again)
        assert tokens_printed(again.output) == tokens
        events = requests.get(f"{base}/api/events", timeout=5).json()
        assert len(events) == 1
        detail = requests.get(f"{base}/api/events/{events[0]['id']}", timeout=5).json()
        assert detail["counts"] == {"available": DEMO_SEATS - 1, "locked": 0, "booked": 1, "blocked": 0}
        mine = requests.get(f"{base}/api/me/seats", headers=headers, timeout=5).json()["seats"]
        assert [(s["id"], s["status"]) for s in mine] == [(seats[0]["id"], "booked")]
        ctrl_c(again)
    finally:
        again.stop()


@pytest.mark.django_db
def test_load_demo_twice_keeps_one_event_and_the_same_users(capsys):
    call_command("load_demo")
    first = capsys.readouterr().out
    call_command("load_demo")
    second = capsys.readouterr().out

    assert tokens_printed(first) == tokens_printed(second)
    assert set(tokens_printed(first)) == {"alice", "bob", "boxoffice"}
    event = Event.objects.get()
    assert event.name == "Demo concert"
    assert Seat.objects.filter(event=event).count() == DEMO_SEATS
    layout = {(s.section, s.row, s.number, s.label) for s in read_layout(DEMO_LAYOUT.read_bytes())}
    assert set(Seat.objects.values_list("section", "row", "number", "label")) == layout
    assert get_user_model().objects.count() == 3
    for username in ("alice", "bob", "boxoffice"):  # they can sign in to the seat-map page
        assert authenticate(username=username, password=f"demo-{username}") is not None
    users = {u.username: u for u in get_user_model().objects.all()}
    assert users["boxoffice"].has_perm("booking.hold_for_others")
    assert not users["alice"].has_perm("booking.hold_for_others")
    assert not users["bob"].has_perm("booking.hold_for_others")


@pytest.mark.django_db
def test_load_demo_keeps_a_password_changed_since(capsys):
    call_command("load_demo")
    alice = get_user_model().objects.get(username="alice")
    alice.set_password("a-new-secret")
    alice.save()

    call_command("load_demo")

    assert authenticate(username="alice", password="a-new-secret") is not None
    assert authenticate(username="alice", password="demo-alice") is None
