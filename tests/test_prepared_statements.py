"""On PostgreSQL the API's hot path runs prepared statements (booking/pg.py): prepared once
per connection, kept across rolled-back requests, and optional (DATABASE_PREPARED_STATEMENTS)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from booking.models import Seat, SeatEvent

from .helpers import assert_error, post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

HOT_PATH = {"booking_lock_rows", "booking_holder_lock", "booking_holder_holds", "booking_write_seats"}


def prepared_on_this_connection() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


def test_a_new_connection_prepares_the_hot_path_once_and_keeps_it_after_a_rollback(alice, bob, seat_ids):
    connection.close()  # a new session: nothing prepared yet
    assert prepared_on_this_connection() == set()
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert HOT_PATH | {"booking_token_user"} <= prepared_on_this_connection()
    # A broken rule rolls the request's transaction back; the statements stay prepared.
    assert_error(post(bob, "/api/lock", {"seatId": seat_ids[0]}), 409, "seat_locked")
    assert HOT_PATH <= prepared_on_this_connection()
    assert post(alice, "/api/confirm", {"seatId": seat_ids[0]}).status_code == 200
    assert Seat.objects.get(pk=seat_ids[0]).booked_by == "alice"


def test_without_prepared_statements_the_same_requests_give_the_same_answers(alice, bob, seat_ids, settings):
    settings.DATABASE_PREPARED_STATEMENTS = False
    connection.close()
    assert post(alice, "/api/lock", {"seatIds": seat_ids[:2]}).status_code == 200
    assert_error(post(bob, "/api/lock", {"seatId": seat_ids[0]}), 409, "seat_locked", [seat_ids[0]])
    assert post(alice, "/api/confirm", {"seatId": seat_ids[0]}).status_code == 200
    assert post(alice, "/api/unlock", {"seatId": seat_ids[1]}).status_code == 200
    assert prepared_on_this_connection() == set()
    actions = list(SeatEvent.objects.order_by("id").values_list("seat_id", "action"))
    assert actions == [
        (seat_ids[0], "locked"),
        (seat_ids[1], "locked"),
        (seat_ids[0], "booked"),
        (seat_ids[1], "unlocked"),
    ]


def test_the_hot_path_runs_on_generic_plans_and_other_queries_keep_custom_ones(alice, seat_ids):
    """Left to choose, PostgreSQL plans `id = ANY($1)` anew on every run; the hot path's own
    transactions pin the one generic plan, and only they: the seat map's query keeps its plans."""
    connection.close()
    for seat_id in seat_ids[:8]:
        assert post(alice, "/api/lock", {"seatId": seat_id}).status_code == 200
        assert post(alice, "/api/confirm", {"seatId": seat_id}).status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements")
        plans = {name: (generic, custom) for name, generic, custom in cursor.fetchall()}
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "auto"
    for name in ("booking_lock_rows", "booking_holder_holds", "booking_write_seats"):
        generic, custom = plans[name]
        assert generic >= 8 and custom == 0, (name, plans[name])


def test_a_connection_per_request_prepares_nothing(alice, seat_ids, monkeypatch):
    """CONN_MAX_AGE=0 (the ASGI server's setting): preparing would cost more than it saves.
    (The session itself ends with each request, so the preparing step is watched.)"""
    from django.db import connections

    from booking import pg

    prepared_sessions = []
    prepare = pg._prepare_session

    def watched(raw, cursor):
        prepared_sessions.append(raw)
        prepare(raw, cursor)

    monkeypatch.setattr(pg, "_prepare_session", watched)
    connection.close()
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
    assert len(prepared_sessions) == 1  # a persistent connection: prepared once
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    connection.close()
    assert post(alice, "/api/confirm", {"seatId": seat_ids[0]}).status_code == 200
    assert post(alice, "/api/lock", {"seatId": seat_ids[1]}).status_code == 200
    assert len(prepared_sessions) == 1
    assert Seat.objects.get(pk=seat_ids[0]).booked_by == "alice"


def test_a_statement_registered_twice_is_prepared_once(alice, seat_ids, monkeypatch):
    """The token lookup's statement is made on a process's first requests, which may come on
    several threads at once: a name prepared twice would fail every new connection."""
    from booking import pg
    from booking.api import authentication

    before = list(pg._statements)
    monkeypatch.setattr(authentication, "_statement", None)
    barrier = threading.Barrier(8)

    def first_request_of_a_thread():
        barrier.wait()
        return authentication._user_query()

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: first_request_of_a_thread(), range(8)))
    assert len({id(statement) for statement in made}) == 1
    assert [s.name for s in pg._statements] == [s.name for s in before]
    twin = pg.Prepared("booking_token_user", made[0][1].sql, ["varchar"])  # the same again: no-op
    assert [s.name for s in pg._statements].count("booking_token_user") == 1 and twin.name == "booking_token_user"
    with pytest.raises(ValueError):
        pg.Prepared("booking_token_user", "SELECT %s::int", ["int"])
    connection.close()
    assert post(alice, "/api/lock", {"seatId": seat_ids[0]}).status_code == 200
