"""The sweep racing another sweep, or a lock taking over the same expired seat:
each expiry is recorded exactly once, and no lock is lost.

Each thread has its own database connection. The PostgreSQL tests force the
dangerous interleavings (one side holds its row locks while the other runs);
the free-running races run on both databases. A control shows that the same
harness catches a double-recorded expiry when the sweep does not lock rows.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models.functions import Now

from booking.models import Seat, SeatAction, SeatEvent, SeatStatus
from booking.services import expiry, holds, holds_release_expired, seats_lock

TIMEOUT = 10  # seconds; every wait below is bounded by it


def expire_now(seat_ids) -> None:
    Seat.objects.filter(pk__in=list(seat_ids)).update(lock_expires_at=Now() - timedelta(seconds=1))


def expired_counts(seat_ids) -> Counter:
    return Counter(
        SeatEvent.objects.filter(seat_id__in=list(seat_ids), action=SeatAction.EXPIRED).values_list(
            "seat_id", flat=True
        )
    )


def actions(seat_id: int) -> list[tuple[str, str]]:
    return list(SeatEvent.objects.filter(seat_id=seat_id).order_by("created_at", "id").values_list("action", "holder"))


class Worker(threading.Thread):
    """Runs ``fn`` on its own database connection; keeps its result or error."""

    def __init__(self, fn, name=None):
        super().__init__(daemon=True, name=name)
        self.fn, self.result, self.error = fn, None, None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            connection.close()

    def finish(self):
        self.join(TIMEOUT)
        assert not self.is_alive(), "thread did not finish in time"
        if self.error is not None:
            raise self.error
        return self.result


def wait_until_blocked_on_a_lock() -> None:
    """Until another session of this database waits for a row lock (PostgreSQL)."""
    deadline = time.monotonic() + TIMEOUT
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    raise AssertionError("no session blocked on a row lock")


KEEPS_OPEN = "keeps-its-transaction-open"


def keep_transaction_open(monkeypatch, service_module, holding: threading.Event, release: threading.Event) -> None:
    """In a Worker named KEEPS_OPEN, the service of ``service_module`` keeps its own transaction
    (and so its row locks) open after its writes: it signals ``holding``, then waits for ``release``."""
    push_after_commit = service_module.push_after_commit

    def push_then_wait(rows):
        push_after_commit(rows)
        if threading.current_thread().name == KEEPS_OPEN:
            holding.set()
            assert release.wait(TIMEOUT)

    monkeypatch.setattr(service_module, "push_after_commit", push_then_wait)


@pytest.fixture
def expired_holds(make_event):
    """20 seats whose holds (by alice and carol) have expired, and 10 free seats."""
    event = make_event(rows=("A", "B", "C"), seats_per_row=10)
    ids = list(event.seats.order_by("pk").values_list("pk", flat=True))
    seats_lock(seat_ids=ids[:10], holder="alice")
    seats_lock(seat_ids=ids[10:20], holder="carol")
    expire_now(ids[:20])
    return event, ids[:20]


# --- Two sweeps -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sweep_skips_rows_another_sweep_holds_and_records_each_expiry_once(expired_holds, monkeypatch):
    event, ids = expired_holds
    first_holds = threading.Event()
    second_done = threading.Event()
    # The first sweep keeps its row locks until the second sweep has run.
    keep_transaction_open(monkeypatch, expiry, first_holds, second_done)

    first = Worker(lambda: holds_release_expired(seat_ids=ids[:10]), name=KEEPS_OPEN)
    first.start()
    try:
        assert first_holds.wait(TIMEOUT)
        started = time.monotonic()
        second = holds_release_expired(event_id=event.pk)
        second_took = time.monotonic() - started
    finally:
        second_done.set()

    assert (first.finish(), second) == (10, 10)
    assert second_took < 1.0, "the second sweep waited for the first one's row locks"
    assert expired_counts(ids) == Counter({seat_id: 1 for seat_id in ids})
    assert Seat.objects.filter(pk__in=ids, status=SeatStatus.AVAILABLE).count() == 20


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_racing_record_each_expiry_once(expired_holds):
    event, ids = expired_holds
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def sweep():
        barrier.wait()
        return holds_release_expired(event_id=event.pk, batch_size=3)

    sweeps = [Worker(sweep) for _ in range(2)]
    for thread in sweeps:
        thread.start()
    released = [thread.finish() for thread in sweeps]

    assert sum(released) == 20
    assert expired_counts(ids) == Counter({seat_id: 1 for seat_id in ids})
    assert Seat.objects.filter(pk__in=ids, status=SeatStatus.AVAILABLE).count() == 20


@pytest.mark.django_db(transaction=True)
def test_control_unlocked_sweeps_racing_record_expiries_twice(expired_holds):
    """The harness above can see a double-recorded expiry: a sweep that reads the
    expired seats and then writes them without row locks records them twice."""
    event, ids = expired_holds
    barrier = threading.Barrier(2, timeout=TIMEOUT)

    def naive_sweep():
        rows = list(
            Seat.objects.filter(event=event, status=SeatStatus.LOCKED, lock_expires_at__lte=Now()).values(
                "id", "event_id", "locked_by"
            )
        )
        barrier.wait()  # both have read before either writes
        with transaction.atomic():
            Seat.objects.filter(pk__in=[r["id"] for r in rows]).update(
                status=SeatStatus.AVAILABLE, locked_by="", locked_at=None, lock_expires_at=None
            )
            SeatEvent.objects.bulk_create(
                SeatEvent(seat_id=r["id"], event_id=r["event_id"], action=SeatAction.EXPIRED, holder=r["locked_by"])
                for r in rows
            )
        return len(rows)

    sweeps = [Worker(naive_sweep) for _ in range(2)]
    for thread in sweeps:
        thread.start()
    assert [thread.finish() for thread in sweeps] == [20, 20]
    assert expired_counts(ids) == Counter({seat_id: 2 for seat_id in ids})


# --- A sweep and a lock on the same expired seat ----------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_lock_waiting_behind_a_sweep_takes_the_released_seat(expired_holds, monkeypatch):
    event, ids = expired_holds
    seat_id = ids[0]
    sweep_holds = threading.Event()
    release = threading.Event()
    keep_transaction_open(monkeypatch, expiry, sweep_holds, release)

    sweeper = Worker(lambda: holds_release_expired(seat_ids=[seat_id]), name=KEEPS_OPEN)
    sweeper.start()
    try:
        assert sweep_holds.wait(TIMEOUT)
        locker = Worker(lambda: seats_lock(seat_ids=[seat_id], holder="bob"))
        locker.start()
        wait_until_blocked_on_a_lock()  # bob's lock waits for the sweep's row lock
    finally:
        release.set()

    assert sweeper.finish() == 1
    result = locker.finish()
    assert result.seats[0]["status"] == "locked"
    seat = Seat.objects.get(pk=seat_id)
    assert (seat.status, seat.locked_by) == (SeatStatus.LOCKED, "bob")
    assert actions(seat_id) == [("locked", "alice"), ("expired", "alice"), ("locked", "bob")]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_sweep_skips_a_seat_a_lock_is_taking_over(expired_holds, monkeypatch):
    event, ids = expired_holds
    seat_id = ids[0]
    lock_holds = threading.Event()
    release = threading.Event()
    keep_transaction_open(monkeypatch, holds, lock_holds, release)  # bob's lock, not yet committed, holds the row

    locker = Worker(lambda: seats_lock(seat_ids=[seat_id], holder="bob"), name=KEEPS_OPEN)
    locker.start()
    try:
        assert lock_holds.wait(TIMEOUT)
        started = time.monotonic()
        released = holds_release_expired(event_id=event.pk)
        took = time.monotonic() - started
    finally:
        release.set()

    assert locker.finish().seats[0]["status"] == "locked"
    assert released == 19  # every expired hold but the one bob is taking over
    assert took < 1.0, "the sweep waited for the lock's row lock"
    seat = Seat.objects.get(pk=seat_id)
    assert (seat.status, seat.locked_by) == (SeatStatus.LOCKED, "bob")
    assert seat.lock_expires_at > Seat.objects.values_list(Now(), flat=True)[0]
    # The lock recorded the old hold's expiry itself; the sweep did not record it again.
    assert actions(seat_id) == [("locked", "alice"), ("expired", "alice"), ("locked", "bob")]
    assert expired_counts(ids) == Counter({i: 1 for i in ids})


@pytest.mark.django_db(transaction=True)
def test_sweeps_racing_locks_on_expired_seats_lose_no_lock_and_record_once(expired_holds, settings):
    settings.BOOKING_MAX_HOLDS = 20
    event, ids = expired_holds
    targets = ids[:10]
    barrier = threading.Barrier(3, timeout=TIMEOUT)

    def sweep():
        barrier.wait()
        return sum(holds_release_expired(event_id=event.pk, batch_size=2) for _ in range(3))

    def locks():
        barrier.wait()
        return [seats_lock(seat_ids=[seat_id], holder="bob").holder for seat_id in targets]

    threads = [Worker(sweep), Worker(sweep), Worker(locks)]
    for thread in threads:
        thread.start()
    swept_a, swept_b, locked = (thread.finish() for thread in threads)

    assert locked == ["bob"] * 10  # every lock succeeded
    seats = {s["id"]: s for s in Seat.objects.filter(pk__in=ids).values("id", "status", "locked_by")}
    for seat_id in targets:  # and none was undone by a sweep
        assert (seats[seat_id]["status"], seats[seat_id]["locked_by"]) == (SeatStatus.LOCKED, "bob")
    for seat_id in ids[10:]:
        assert seats[seat_id]["status"] == SeatStatus.AVAILABLE
    # Each of the 20 expiries is recorded once, by whichever got there first.
    assert expired_counts(ids) == Counter({seat_id: 1 for seat_id in ids})
    assert swept_a + swept_b <= 20
    for seat_id in targets:
        assert actions(seat_id)[-1] == ("locked", "bob")
