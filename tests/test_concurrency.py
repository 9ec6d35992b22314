"""Races on real threads, each with its own connection, on committed data.

On PostgreSQL these prove the row locks; on SQLite the same races must end
without a 500 (IMMEDIATE transactions queue the writers). The control test
shows the race is real: without the row lock, it double-books.
"""

import random
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Count
from django.db.models.functions import Now

from booking import services
from booking.models import Event, Seat, SeatEvent
from booking.services import holds, pipeline

from .conftest import api_client_for
from .helpers import expire_hold, post, wsgi_post
from .racing import race, statuses

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def clients(make_user):
    def make(count: int, prefix: str = "racer"):
        return [api_client_for(make_user(f"{prefix}{i}")) for i in range(count)]

    return make


def test_thirty_callers_race_for_one_seat_and_exactly_one_wins(clients, seat_ids):
    racers = clients(30)
    responses = race([lambda c=c: post(c, "/api/lock", {"seatId": seat_ids[0]}) for c in racers])
    assert statuses(responses) == {200: 1, 409: 29}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"seat_locked"}
    winner = next(r.json()["holder"] for r in responses if r.status_code == 200)
    assert Seat.objects.get(pk=seat_ids[0]).locked_by == winner
    assert list(SeatEvent.objects.values_list("action", "holder")) == [("locked", winner)]


def test_thirty_callers_race_to_confirm_and_book_one_seat_once(clients, seat_ids, make_user):
    racers = clients(30)
    box_office = api_client_for(make_user("office", hold_for_others=True))

    # Everyone tries lock-then-confirm on the same seat; one booking results.
    def book(client):
        locked = post(client, "/api/lock", {"seatId": seat_ids[0]})
        return locked if locked.status_code != 200 else post(client, "/api/confirm", {"seatId": seat_ids[0]})

    responses = race([lambda c=c: book(c) for c in racers])
    assert statuses(responses) == {200: 1, 409: 29}
    row = Seat.objects.get(pk=seat_ids[0])
    assert row.status == "booked"
    assert SeatEvent.objects.filter(action="booked").count() == 1
    assert post(box_office, "/api/lock", {"seatId": seat_ids[0], "userId": "x"}).status_code == 409


def test_thirty_callers_race_through_the_production_wsgi_application_and_one_books(make_user, seat_ids):
    """The production WSGI application (config/wsgi.py), as the web server calls it."""
    from config.wsgi import application

    tokens = {f"hot{i}": make_user(f"hot{i}").auth_token.key for i in range(30)}

    def book(token):
        locked = wsgi_post(application, "/api/lock", {"seatId": seat_ids[0]}, token=token)
        if not locked.status.startswith("200"):
            return locked
        return wsgi_post(application, "/api/confirm", {"seatId": seat_ids[0]}, token=token)

    answers = race([lambda t=t: book(t) for t in tokens.values()])
    assert Counter(a.status[:3] for a in answers) == {"200": 1, "409": 29}
    assert {a.json()["code"] for a in answers if a.status.startswith("409")} <= {"seat_locked", "seat_booked"}
    winner = next(a.json()["holder"] for a in answers if a.status.startswith("200"))
    row = Seat.objects.get(pk=seat_ids[0])
    assert (row.status, row.booked_by) == ("booked", winner)
    assert list(SeatEvent.objects.order_by("id").values_list("action", "holder", "actor__username")) == [
        ("locked", winner, winner),
        ("booked", winner, winner),
    ]


def test_overlapping_multi_seat_requests_never_deadlock_and_are_all_or_nothing(clients, seat_ids, settings):
    settings.BOOKING_MAX_HOLDS = 100
    racers = clients(24)
    pool = seat_ids[:12]
    rng = random.Random(7)
    wanted = [rng.sample(pool, rng.randint(2, 5)) for _ in racers]  # random order: the service sorts
    responses = race(
        [lambda c=c, w=w: post(c, "/api/lock", {"seatIds": w}) for c, w in zip(racers, wanted, strict=True)]
    )
    assert set(statuses(responses)) <= {200, 409}, [r.content for r in responses if r.status_code not in (200, 409)]
    held_by: dict[int, str] = {}
    for response, seats in zip(responses, wanted, strict=True):
        if response.status_code == 200:
            holder = response.json()["holder"]
            for seat_id in seats:
                assert seat_id not in held_by, "two winners share a seat"
                held_by[seat_id] = holder
        else:
            assert response.json()["code"] == "seat_locked"
    assert statuses(responses)[200] >= 1
    in_db = dict(Seat.objects.filter(status="locked").values_list("pk", "locked_by"))
    assert in_db == held_by  # every winner holds all its seats; losers hold none
    assert SeatEvent.objects.filter(action="locked").count() == len(held_by)


def test_one_holder_racing_itself_stays_within_the_hold_limit(make_user, seat_ids, settings):
    settings.BOOKING_MAX_HOLDS = 5
    alice = api_client_for(make_user("alice"))
    pairs = [seat_ids[i : i + 2] for i in range(0, 20, 2)]
    responses = race([lambda p=p: post(alice, "/api/lock", {"seatIds": p}) for p in pairs])
    winners = statuses(responses)[200]
    assert winners == 2
    assert {r.json()["code"] for r in responses if r.status_code != 200} == {"too_many_holds"}
    assert Seat.objects.filter(locked_by="alice", status="locked").count() == 4


def test_lock_racing_confirm_on_a_hold_at_its_expiry(make_user, seat_ids):
    alice = api_client_for(make_user("alice"))
    bob = api_client_for(make_user("bob"))
    outcomes = set()
    for round_no, seat_id in enumerate(seat_ids[:12]):
        assert post(alice, "/api/lock", {"seatId": seat_id}).status_code == 200
        # The hold runs out within a few milliseconds of the race.
        Seat.objects.filter(pk=seat_id).update(lock_expires_at=Now() + timedelta(milliseconds=round_no * 4))
        confirm, lock = race(
            [
                lambda s=seat_id: post(alice, "/api/confirm", {"seatId": s}),
                lambda s=seat_id: post(bob, "/api/lock", {"seatId": s}),
            ]
        )
        assert not (confirm.status_code == 200 and lock.status_code == 200)
        assert {confirm.status_code, lock.status_code} <= {200, 409}
        row = Seat.objects.get(pk=seat_id)
        if confirm.status_code == 200:
            assert (row.status, row.booked_by) == ("booked", "alice")
            assert lock.json()["code"] in ("seat_booked", "seat_locked")
        elif lock.status_code == 200:
            assert (row.status, row.locked_by) == ("locked", "bob")
            assert confirm.json()["code"] == "hold_expired"
        else:
            assert row.status in ("locked", "available") and row.locked_by in ("alice", "")
        outcomes.add((confirm.status_code, lock.status_code))
        actions = list(SeatEvent.objects.filter(seat_id=seat_id).order_by("id").values_list("action", flat=True))
        assert actions.count("booked") + actions.count("expired") <= 1
    assert outcomes  # every round ended in one consistent state


def test_lock_racing_the_sweep_records_each_expiry_once(make_user, seat_ids):
    alice = api_client_for(make_user("alice"))
    bob = api_client_for(make_user("bob"))
    ids = seat_ids[:10]
    assert post(alice, "/api/lock", {"seatIds": ids}).status_code == 200
    expire_hold(*ids)
    calls = [lambda s=s: post(bob, "/api/lock", {"seatId": s}) for s in ids] + [services.holds_release_expired] * 3
    results = race(calls)
    assert all(r.status_code == 200 for r in results[: len(ids)])
    assert Seat.objects.filter(pk__in=ids, locked_by="bob", status="locked").count() == len(ids)
    expired = SeatEvent.objects.filter(action="expired", seat_id__in=ids).values("seat_id").annotate(n=Count("id"))
    assert sorted((row["seat_id"], row["n"]) for row in expired) == [(s, 1) for s in ids]
    assert sum(results[len(ids) :]) <= len(ids)


def test_two_sweeps_racing_record_each_expiry_once(make_user, seat_ids, settings):
    settings.BOOKING_MAX_HOLDS = 30
    alice = api_client_for(make_user("alice"))
    assert post(alice, "/api/lock", {"seatIds": seat_ids}).status_code == 200
    expire_hold(*seat_ids)
    released = race([lambda: services.holds_release_expired(batch_size=7)] * 4)
    assert sum(released) == len(seat_ids)
    assert SeatEvent.objects.filter(action="expired").count() == len(seat_ids)
    assert not Seat.objects.filter(status="locked").exists()


def _hold_write_lock_on(seat_id: int, release_after: float) -> None:
    """Another client holds the seat's row lock (PostgreSQL) or the database write lock (SQLite)."""
    with transaction.atomic():
        list(Seat.objects.select_for_update().filter(pk=seat_id))
        Seat.objects.filter(pk=seat_id).update(label="Z1")
        Seat.objects.filter(pk=seat_id).update(label="A1")
        time.sleep(release_after)


def test_a_request_waits_at_most_the_lock_timeout_then_gets_503_busy(make_user, seat_ids, settings):
    alice = api_client_for(make_user("alice"))
    timeout = settings.BOOKING_LOCK_TIMEOUT_MS / 1000

    def lock_after_a_moment():
        time.sleep(0.3)
        started = time.monotonic()
        return post(alice, "/api/lock", {"seatId": seat_ids[0]}), time.monotonic() - started

    _, (response, waited) = race([lambda: _hold_write_lock_on(seat_ids[0], timeout + 1.5), lock_after_a_moment])
    assert response.status_code == 503, response.content
    assert response.json()["code"] == "busy"
    assert response["Retry-After"] == "1"
    assert timeout - 0.5 <= waited <= timeout + 1.0
    assert Seat.objects.get(pk=seat_ids[0]).status == "available"
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200  # and afterwards it works


@pytest.mark.postgres
def test_bookings_never_wait_for_their_events_row(make_user, event, seat_ids, settings):
    """A sale's bookings all name one event: none of them locks its row (an audit row's foreign
    key to it would, at every commit). Another transaction holds that row for longer than the
    lock timeout, and lock, confirm and unlock still answer at once."""
    alice = api_client_for(make_user("alice"))
    hold_for = settings.BOOKING_LOCK_TIMEOUT_MS / 1000 + 1.5

    def hold_the_event_row():
        with transaction.atomic():
            list(Event.objects.select_for_update().filter(pk=event.pk))
            time.sleep(hold_for)

    def book_meanwhile():
        time.sleep(0.3)
        answers = []
        for path, seat in [
            ("/api/lock", seat_ids[0]),
            ("/api/confirm", seat_ids[0]),
            ("/api/lock", seat_ids[1]),
            ("/api/unlock", seat_ids[1]),
        ]:
            started = time.monotonic()
            response = post(alice, path, {"seatId": seat})
            answers.append((path, response.status_code, time.monotonic() - started))
        return answers

    _, answers = race([hold_the_event_row, book_meanwhile])
    assert [status for _, status, _ in answers] == [200, 200, 200, 200], answers
    assert all(seconds < 1.0 for _, _, seconds in answers), answers
    assert Seat.objects.get(pk=seat_ids[0]).booked_by == "alice"
    assert list(SeatEvent.objects.filter(seat_id=seat_ids[0]).order_by("id").values_list("action", "event_id")) == [
        ("locked", event.pk),
        ("booked", event.pk),
    ]


@pytest.mark.postgres
def test_control_without_the_row_lock_the_race_double_books(make_user, seat_ids, monkeypatch):
    """Shows the race tests can fail: the same service with FOR UPDATE removed lets several
    callers win one seat."""

    racers = [api_client_for(make_user(f"racer{i}")) for i in range(10)]
    # The read-then-write window every unlocked check has, held open until every caller has
    # read (a fixed sleep let callers that started late read after the first had written).
    all_have_read = threading.Barrier(len(racers))
    monkeypatch.setattr(pipeline, "_ROW_LOCKS", Seat.objects.order_by("pk").values_list("pk", flat=True))
    lock_seat_rows = pipeline.lock_seat_rows

    def lock_then_wait(*args, **kwargs):
        result = lock_seat_rows(*args, **kwargs)
        all_have_read.wait(timeout=30)
        return result

    monkeypatch.setattr(holds, "lock_seat_rows", lock_then_wait)
    responses = race([lambda c=c: post(c, "/api/lock", {"seatId": seat_ids[0]}) for c in racers])
    assert statuses(responses)[200] > 1, "without the row lock the race should double-book"


def test_a_hold_that_runs_out_while_confirm_waits_for_the_row_lock_cannot_be_confirmed(make_user, seat_ids):
    """The rules' clock is read once the row locks are granted, not when the request arrived:
    a confirm that waited past its hold's expiry gets hold_expired, and nothing is booked."""
    alice = api_client_for(make_user("alice"))
    seat_id = seat_ids[0]
    assert post(alice, "/api/lock", {"seatId": seat_id}).status_code == 200
    Seat.objects.filter(pk=seat_id).update(lock_expires_at=Now() + timedelta(milliseconds=800))

    def confirm_after_a_moment():
        time.sleep(0.2)  # arrives while the hold is still live, then waits for the row
        return post(alice, "/api/confirm", {"seatId": seat_id})

    _, response = race([lambda: _hold_write_lock_on(seat_id, 1.5), confirm_after_a_moment])
    assert response.status_code == 409, response.content
    assert response.json()["code"] == "hold_expired"
    assert Seat.objects.get(pk=seat_id).status != "booked"
    assert not SeatEvent.objects.filter(seat_id=seat_id, action="booked").exists()


def test_a_hold_that_runs_out_while_a_lock_waits_for_the_row_lock_is_taken_over(make_user, seat_ids):
    """The same clock for a lock: bob's request, which arrived while alice's hold was live, takes
    the seat once it gets the row, because by then her hold has run out."""
    alice = api_client_for(make_user("alice"))
    bob = api_client_for(make_user("bob"))
    seat_id = seat_ids[0]
    assert post(alice, "/api/lock", {"seatId": seat_id}).status_code == 200
    Seat.objects.filter(pk=seat_id).update(lock_expires_at=Now() + timedelta(milliseconds=800))

    def lock_after_a_moment():
        time.sleep(0.2)
        return post(bob, "/api/lock", {"seatId": seat_id})

    _, response = race([lambda: _hold_write_lock_on(seat_id, 1.5), lock_after_a_moment])
    assert response.status_code == 200, response.content
    row = Seat.objects.get(pk=seat_id)
    assert (row.status, row.locked_by) == ("locked", "bob")
    actions = list(SeatEvent.objects.filter(seat_id=seat_id).order_by("id").values_list("action", "holder"))
    assert actions == [("locked", "alice"), ("expired", "alice"), ("locked", "bob")]
