"""The steps every seat write takes, in this order, whoever asks (API, admin, sweep).

1. :func:`write_transaction`: Django's ``transaction.atomic`` (durable: the
   service is the outermost block), whose lock waits and lock failures become
   :class:`~booking.errors.Busy`.
2. :func:`lock_seat_rows`: the seats' row locks, one ``SELECT … FOR UPDATE``
   in id order (overlapping multi-seat requests never deadlock); then the seats
   read again with their live status and the database's clock, in a statement
   that starts after the locks were granted, so a hold that ran out while the
   request waited has run out. (On SQLite ``select_for_update`` does nothing:
   the IMMEDIATE transaction already admits one writer at a time.)
3. The rules, by the service, on those rows (:class:`RuleErrors` reports the
   most important break).
4. :func:`update_seats` and :func:`save_audit`: the ORM's writes and the audit
   rows, in the same transaction.
5. :func:`push_after_commit`: the live push, by ``transaction.on_commit``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from django.db import IntegrityError, OperationalError, transaction
from django.db.models import F
from django.db.models.functions import Now

from .. import activity
from ..errors import (
    BookingError,
    Busy,
    HoldExpired,
    InvalidRequest,
    NotLockedByYou,
    SeatBlocked,
    SeatBooked,
    SeatLocked,
    SeatNotFound,
    TooManyHolds,
)
from ..holders import loggable
from ..live import publish_seat_changes
from ..metrics import LOCK_WAIT_SECONDS
from ..models import Seat, SeatEvent, SeatMapVersion, SeatStatus, hold_is_live
from ..representations import SEAT_COLUMNS, seat_payloads, seat_values
from . import sql

logger = logging.getLogger("booking.services")

#: When several seats of one request break different rules, the first of
#: these that applies is reported, with the seats it applies to.
ERROR_PRECEDENCE: tuple[type[BookingError], ...] = (
    SeatNotFound,
    SeatBooked,
    SeatBlocked,
    HoldExpired,
    SeatLocked,
    NotLockedByYou,
    TooManyHolds,
)

#: What the rules read of a locked seat, besides its payload's columns.
LOCKED_ROW_COLUMNS = (*SEAT_COLUMNS, "status", "locked_by", "locked_at", "lock_expires_at", "booked_by", "booking_id")


@contextmanager
def write_transaction() -> Iterator[None]:
    """The service's transaction (the outermost one); a lock wait that ran out is :class:`Busy`.

    PostgreSQL gives up a row-lock wait after ``lock_timeout`` (set per
    connection from BOOKING_LOCK_TIMEOUT_MS), SQLite after its busy timeout.
    """
    state = _WriteState()
    token = _write_state.set(state)
    try:
        with transaction.atomic(durable=True):
            yield
            state.finish()
    except OperationalError as exc:
        raise Busy() from exc
    except IntegrityError as exc:  # a constraint caught what a rule should have
        # Escaped: PostgreSQL's message quotes the failing row, holders included, on lines of its own.
        logger.error("integrity error in a seat write: %s", loggable(exc))
        raise Busy("The seats changed under this request; retry.") from exc
    finally:
        _write_state.reset(token)


@dataclass
class _WriteState:
    """What a write transaction did, for its last statements and its commit."""

    #: Event id -> the lowest seat id changed (on SQLite it picks the seat-map counter's shard).
    changed_maps: dict[int, int] = field(default_factory=dict)
    #: Every seat's change, for the activity log and counters after commit.
    changes: list[activity.Change] = field(default_factory=list)
    #: Booking id -> reference, of the bookings this transaction made or read.
    references: dict[int, str] = field(default_factory=dict)
    new_bookings: set[int] = field(default_factory=set)

    def finish(self) -> None:
        _bump(self.changed_maps)
        activity.changes_after_commit(self.changes, references=self.references, new_bookings=self.new_bookings)


#: The state of this thread's write transaction; None outside :func:`write_transaction`.
_write_state: ContextVar[_WriteState | None] = ContextVar("seat_write_state", default=None)


def note_seat_map_changes(changes: Iterable[tuple[int, int]]) -> None:
    """Record that seats changed, as (event id, seat id) pairs: the events' seat-map counters
    (their ETag, :class:`~booking.models.SeatMapVersion`) go up by one in this transaction.

    Inside :func:`write_transaction` the counters are bumped as its last statement; elsewhere
    (seats added in a caller's ``atomic``) at once.
    """
    state = _write_state.get()
    target: dict[int, int] = {} if state is None else state.changed_maps
    for event_id, seat_id in changes:
        if event_id not in target or seat_id < target[event_id]:
            target[event_id] = seat_id
    if state is None:
        _bump(target)


def note_changes(changes: Iterable[activity.Change]) -> None:
    """Seat changes to log and count once the write transaction commits."""
    state = _write_state.get()
    if state is not None:
        state.changes.extend(changes)


def note_booking(booking_id: int, reference: str, *, created: bool = False) -> None:
    """A booking this write made (``created``) or read: its reference names it in the log."""
    state = _write_state.get()
    if state is not None:
        state.references[booking_id] = reference
        if created:
            state.new_bookings.add(booking_id)


def _bump(changed: dict[int, int]) -> None:
    """One counter row per changed event, in event id order: a transaction takes them after all
    its seat row locks and never waits for a seat after, so two writers cannot deadlock on
    them; and being last, each is held only until the commit."""
    if changed:
        sql.bump_seat_map_versions(
            [(event_id, changed[event_id] % SeatMapVersion.SHARDS) for event_id in sorted(changed)]
        )


# Built once per process, cloned per request with its ids: a QuerySet resolves its filters
# and annotations when they are added, which cost several times more than compiling them
# (measured: 0.95 ms against 0.27 ms for the live rows). Never evaluated themselves.
_ROW_LOCKS = Seat.objects.select_for_update(of=("self",)).order_by("pk").values_list("pk", flat=True)
_LIVE_ROWS = (
    Seat.objects.order_by("pk")
    .with_live_status()
    .values(
        *LOCKED_ROW_COLUMNS,
        hold_seconds=F("event__hold_seconds"),
        event_starts_at=F("event__starts_at"),
        db_now=Now(),
    )
)
_LIVE_HOLDS = Seat.objects.filter(hold_is_live()).values_list("event_id", "pk")


def lock_seat_rows(
    seat_ids: Sequence[int], *, holder: str | None = None, locked_already: bool = False
) -> tuple[list[dict[str, Any]], datetime]:
    """Row-lock the seats in id order; return them, live, and the database's time after the locks.

    Each row has :data:`LOCKED_ROW_COLUMNS` and the event's ``hold_seconds``.
    With ``holder`` (a lock request), that holder's requests are serialized
    first (so the hold limit is exact), and each row also has
    ``held_in_event``: the holder's other live holds in the seat's event.
    Raises :class:`SeatNotFound`, naming the missing ids, before any change.
    ``locked_already``: the caller holds the holder's lock and these rows' locks
    (best available took them, skipping locked rows): only the reads remain.
    """
    ids = sorted(set(seat_ids))
    if not ids:
        raise InvalidRequest("No seat ids given.")
    if not locked_already:
        if holder is not None:
            sql.lock_holder(holder)
        with LOCK_WAIT_SECONDS.time():
            locked = list(_ROW_LOCKS.filter(pk__in=ids))
        if len(locked) != len(ids):
            missing = sorted(set(ids) - set(locked))
            raise SeatNotFound(error_detail(SeatNotFound, missing), seats=missing)
    rows = read_locked_rows(ids)
    if holder is not None:
        requested = set(ids)
        held: dict[int, int] = defaultdict(int)
        for event_id, seat_id in _LIVE_HOLDS.filter(locked_by=holder, event_id__in={r["event_id"] for r in rows}):
            if seat_id not in requested:
                held[event_id] += 1
        for row in rows:
            row["held_in_event"] = held[row["event_id"]]
    return rows, rows[0]["db_now"]


def lock_booking_seats(booking_id: int) -> list[int]:
    """Row-lock the seats a booking has now, in id order; their ids. (A seat that left the
    booking while this waited for its lock is not among them: the lock re-reads the row.)"""
    return list(_ROW_LOCKS.filter(booking_id=booking_id))


def read_locked_rows(ids: Sequence[int]) -> list[dict[str, Any]]:
    """Seats this transaction has row-locked, live on the database's clock (``db_now``), which
    this statement reads after the locks were granted; with the event's hold and start."""
    return list(_LIVE_ROWS.filter(pk__in=ids))


def is_expired_hold(row: dict[str, Any]) -> bool:
    """A stored hold that reads as available: it ran out, and its expiry is not recorded yet."""
    return row["status"] == SeatStatus.LOCKED and row["live_status"] == SeatStatus.AVAILABLE


def holds_live(row: dict[str, Any], holder: str) -> bool:
    return row["live_status"] == SeatStatus.LOCKED and row["locked_by"] == holder


def error_detail(error: type[BookingError], seats: list[int]) -> str:
    listed = ", ".join(str(s) for s in seats)
    return f"{error.default_detail} Seat{'s' if len(seats) > 1 else ''}: {listed}."


class RuleErrors:
    """Collects rule breaks per seat; raises the most important one, naming its seats."""

    def __init__(self) -> None:
        self._seats: dict[type[BookingError], list[int]] = defaultdict(list)

    def add(self, error: type[BookingError], seat_id: int) -> None:
        self._seats[error].append(seat_id)

    def raise_first(self) -> None:
        for error in ERROR_PRECEDENCE:
            if self._seats.get(error):
                seats = sorted(self._seats[error])
                raise error(error_detail(error, seats), seats=seats)


#: A seat's columns when nobody holds or booked it.
AVAILABLE = {
    "status": SeatStatus.AVAILABLE.value,
    "locked_by": "",
    "locked_at": None,
    "lock_expires_at": None,
    "booked_by": "",
    "booked_at": None,
    "booking_id": None,
}


def update_seats(seat_ids: Sequence[int], **values: Any) -> None:
    """Write the seats' columns; like every seat write, it bumps their ``version`` by one."""
    if seat_ids:
        Seat.objects.filter(pk__in=seat_ids).update(**values, version=F("version") + 1)


def mark_written(rows: list[dict[str, Any]], *, live_status: str, live_expires_at: datetime | None = None) -> None:
    """Bring rows read before a write to what the write made of them (for their payloads)."""
    for row in rows:
        row.update(live_status=live_status, live_expires_at=live_expires_at, version=row["version"] + 1)


class AuditRow(NamedTuple):
    """One audit row to write (a :class:`SeatEvent` without the model instance)."""

    seat_id: int
    event_id: int
    action: str
    holder: str
    actor_id: int | None
    booking_id: int | None = None


def audit_rows(
    rows: list[dict[str, Any]], action: str, *, actor: Any, holder: str | None = None, booking_id: int | None = None
) -> list[AuditRow]:
    """An audit row per seat; the holder is ``holder``, else the seat's holder or booker;
    ``booking_id`` for the rows that put seats into a booking or take them out."""
    actor_id = getattr(actor, "pk", None)
    return [
        AuditRow(
            row["id"],
            row["event_id"],
            str(action),
            holder if holder is not None else (row.get("locked_by") or row.get("booked_by") or ""),
            actor_id,
            booking_id,
        )
        for row in rows
    ]


def save_audit(audit: list[AuditRow]) -> None:
    """The audit rows; every seat change writes one, so their seat maps' counters go up too."""
    if audit:
        SeatEvent.objects.bulk_create([SeatEvent(**row._asdict()) for row in audit], batch_size=1000)
        note_seat_map_changes((row.event_id, row.seat_id) for row in audit)
        note_changes(
            activity.Change(row.action, row.event_id, row.seat_id, row.holder, row.booking_id) for row in audit
        )


def push_after_commit(rows: list[dict[str, Any]]) -> None:
    """Push the seats' new state to live clients once the transaction commits (never if it rolls back)."""
    if rows:
        payloads = seat_payloads(map(seat_values, rows))
        changed_at = rows[0].get("db_now")  # the sweep's rows have none: its lag counts from the commit
        transaction.on_commit(lambda: publish_seat_changes(payloads, changed_at=changed_at))
