"""Best available: pick the best free seats for a request and hold them like named seats.

The choice is booking/seat_choice.py's pure function; this module reads the rows it
needs, takes the chosen rows' locks without ever waiting, and hands them to the named
lock's own path (:func:`booking.services.holds.hold_locked_rows`).

Concurrency (PostgreSQL): the candidate scan reads the event's free seats by rank, in a
window of ``window`` seats that grows when the best choice might lie beyond it, with the
whole rows they are in (plain reads: they wait for nobody). The chosen seats are then
row-locked in id order with ``FOR UPDATE SKIP LOCKED``, re-checked as free on the
database's clock, in a savepoint. A seat that another request locked first is skipped,
never waited for: the savepoint is rolled back (letting go of the seats this attempt
got), the lost seats count as taken, and the choice is made again from a read that also
skips every seat locked at that instant (a ``SKIP LOCKED`` probe, let go at once). So two
requests never pick the same seat and never wait on each other's row locks. When nothing
fits without the lost seats but something would with them (their requests' transactions
are still open), the request looks again from scratch a few milliseconds later, up to
BOOKING_LOCK_TIMEOUT_MS (then 503 ``busy``); when nothing fits at all, 409
``no_seats_available``. On SQLite the IMMEDIATE transaction admits one writer at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from functools import reduce
from operator import or_
from typing import Any

from django.db import transaction
from django.db.models import BooleanField, Case, Q, QuerySet, Value, When

from .. import conf
from ..errors import Busy, InvalidRequest, NoSeatsAvailable
from ..models import Event, Seat, is_available_now
from ..seat_choice import Choice, Place, Wanted, choose
from . import sql
from .holds import SeatsResult, hold_locked_rows
from .pipeline import lock_seat_rows, write_transaction

#: The first window: free seats read per request, at least this many (or 4 per seat asked).
FIRST_WINDOW = 16
#: Each time the window is too small it grows by this factor (up to the whole event).
WINDOW_GROWTH = 4
#: When every seat that fits is another request's for the moment: the pause before looking again.
RETRY_PAUSE = 0.005
#: The chosen rows' locks skip rows another transaction holds. The race test's control turns it off.
SKIP_LOCKED = True

_PLACE_COLUMNS = ("pk", "section", "row", "number", "rank", "category", "accessible")


class _Read(Exception):
    """A probe's rows are read: roll its savepoint back, and its row locks with it."""

    def __init__(self, rows: list[tuple]):
        self.rows = rows


class _Missed(Exception):
    """Some chosen seats were locked first by another request: roll the savepoint back, and
    with it the row locks this attempt got."""


def seats_lock_best(
    *,
    event_id: int,
    quantity: int,
    holder: str,
    actor: Any = None,
    category: str | None = None,
    section: str | None = None,
    together: bool = True,
    accessible: bool = False,
) -> SeatsResult:
    """Hold the best ``quantity`` free seats of the event for ``holder`` (all or none).

    Raises :class:`NoSeatsAvailable` when nothing fits, and whatever a named lock of
    the chosen seats raises (the hold limit: ``too_many_holds``).
    """
    if not 1 <= quantity <= conf.max_holds():
        raise InvalidRequest(f"quantity must be between 1 and {conf.max_holds()}.")
    wanted = Wanted(quantity=quantity, category=category, section=section, together=together, accessible=accessible)
    with write_transaction():
        # The holder's lock first, as a named lock takes it: before any row lock, so no deadlock.
        sql.lock_holder(holder)
        try:
            ids = _take_best(event_id, wanted)
        except NoSeatsAvailable:
            if not Event.objects.filter(pk=event_id).exists():
                raise InvalidRequest(f"No event {event_id}.") from None
            raise
        rows, now = lock_seat_rows(ids, holder=holder, locked_already=True)  # re-read live, under our locks
        result = hold_locked_rows(rows, now, holder=holder, actor=actor)
    return result


def _take_best(event_id: int, wanted: Wanted) -> list[int]:
    """Row-lock the best free seats for ``wanted``; their ids. Never waits on another's row lock."""
    deadline = time.monotonic() + conf.lock_timeout_ms() / 1000
    first_window = max(FIRST_WINDOW, 4 * wanted.quantity)
    window = first_window
    lost: set[int] = set()  # seats another request locked first, since we read them
    probe = False  # after a miss: read only seats that nobody else has locked now
    while True:
        free, choice = _look(event_id, wanted, exclude=lost, limit=window, probe=probe)
        whole_event = len(free) < window
        if choice is not None and (whole_event or _certain(choice, free, wanted)):
            missed = _lock_if_free(choice.ids)
            if not missed:
                return sorted(choice.ids)
            lost |= missed
            probe = True
            continue
        if not whole_event:
            window *= WINDOW_GROWTH
            continue
        window = first_window
        if probe:  # nothing fits among the seats nobody locks at this instant: look at them all again
            probe = False
            continue
        # Nothing fits without the seats lost to other requests. If nothing fits with them either,
        # there is nothing; else their transactions are still open (they may yet let some go):
        # look again, from scratch, a moment later, up to the lock timeout.
        if not lost or not _fits(event_id, wanted):
            raise NoSeatsAvailable()
        if time.monotonic() > deadline:
            raise Busy("The seats that fit are being taken by other requests; retry.")
        time.sleep(RETRY_PAUSE)
        lost = set()


def _certain(choice: Choice, window: Sequence[Place], wanted: Wanted) -> bool:
    """Whether no seat beyond the window could make a better choice. Every such seat ranks at
    least the window's last; a block with a seat there has all of them there (one row)."""
    bound = window[-1].rank
    if wanted.together:
        return choice.total_rank <= wanted.quantity * bound
    return True  # apart: the choice is the window's best seats, and the rest rank no lower


def _free_seats(event_id: int, wanted: Wanted) -> QuerySet[Seat]:
    """The event's free seats that ``wanted`` admits, best rank first."""
    seats = Seat.objects.filter(is_available_now(), event_id=event_id)
    if wanted.category is not None:
        seats = seats.filter(category=wanted.category)
    if wanted.section is not None:
        seats = seats.filter(section=wanted.section)
    if not wanted.accessible:
        seats = seats.filter(accessible=False)
    return seats.order_by("rank", "pk")


def _places(rows: Iterable[tuple]) -> list[Place]:
    return [
        Place(id=i, section=section, row=row, number=number, rank=rank, free=True, category=cat, accessible=acc)
        for i, section, row, number, rank, cat, acc in rows
    ]


def _look(
    event_id: int, wanted: Wanted, *, exclude: set[int], limit: int, probe: bool
) -> tuple[list[Place], Choice | None]:
    """The best ``limit`` free seats but ``exclude``, and the best choice they make with their
    rows (None if none). A plain read, which waits for nobody; with ``probe`` (after a lock
    missed seats), the read also skips every seat another request has row-locked at this
    instant (``FOR UPDATE SKIP LOCKED`` in a savepoint rolled back at once, and its row locks
    with it), so the requests of a rush do not all chase the same next-best seats."""
    seats = _free_seats(event_id, wanted)
    if exclude:
        seats = seats.exclude(pk__in=exclude)
    if probe:
        try:
            with transaction.atomic():
                locked = seats.select_for_update(skip_locked=SKIP_LOCKED, of=("self",))
                raise _Read(list(locked.values_list(*_PLACE_COLUMNS)[:limit]))
        except _Read as read:
            rows = read.rows
    else:
        rows = list(seats.values_list(*_PLACE_COLUMNS)[:limit])
    free = _places(rows)
    if not free:
        return free, None
    return free, choose(_rows_of(event_id, free, exclude) if wanted.together else free, wanted)


def _fits(event_id: int, wanted: Wanted) -> bool:
    """Whether some choice fits among every free seat, whoever is locking it now."""
    free = _places(_free_seats(event_id, wanted).values_list(*_PLACE_COLUMNS))
    return bool(free) and choose(_rows_of(event_id, free, set()) if wanted.together else free, wanted) is not None


def _rows_of(event_id: int, free: Sequence[Place], lost: set[int]) -> list[Place]:
    """Every seat of the rows the free seats are in, whatever its state (adjacency and
    stranding are judged on whole rows); a seat lost to another request counts as taken."""
    rows = {(p.section, p.row) for p in free}
    in_rows = reduce(or_, (Q(section=section, row=row) for section, row in rows))
    seats = (
        Seat.objects.filter(in_rows, event_id=event_id)
        .annotate(
            free=Case(When(is_available_now(), then=Value(True)), default=Value(False), output_field=BooleanField())
        )
        .values_list(*_PLACE_COLUMNS, "free")
    )
    return [
        Place(
            id=i,
            section=section,
            row=row,
            number=number,
            rank=rank,
            free=free and i not in lost,
            category=cat,
            accessible=acc,
        )
        for i, section, row, number, rank, cat, acc, free in seats
    ]


def _lock_if_free(ids: Sequence[int]) -> set[int]:
    """Row-lock the seats in id order, skipping any another request has locked, re-checked as
    free on the database's clock: the seats it could not get (none: done). When some are
    missing it lets go of the others again (a savepoint rolled back): requests holding parts
    of each other's choices would otherwise starve each other until they time out."""
    try:
        with transaction.atomic():
            got = set(
                Seat.objects.filter(is_available_now(), pk__in=ids)
                .select_for_update(skip_locked=SKIP_LOCKED, of=("self",))
                .order_by("pk")
                .values_list("pk", flat=True)
            )
            if len(got) != len(ids):
                raise _Missed()
    except _Missed:
        return set(ids) - got
    return set()
