"""Every change of a seat goes through here.

Each service opens its own transaction, locks the seat rows it changes in id
order (so overlapping multi-seat requests never deadlock), checks every rule
under that lock using the database's clock, writes the change and its audit
rows in the same transaction, and pushes the change live after commit.
They raise :mod:`booking.errors` and know nothing of HTTP.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    IntegrityError,
    OperationalError,
    connection,
    connections,
    transaction,
)
from django.db.models import Count, F, OuterRef, Subquery
from django.db.models.functions import Now

from . import conf, pg
from .errors import (
    BookingError,
    Busy,
    HoldExpired,
    InvalidRequest,
    NotLockedByYou,
    SeatBooked,
    SeatLocked,
    SeatNotFound,
    TooManyHolds,
)
from .live import publish_seat_changes
from .models import Event, Seat, SeatAction, SeatEvent, SeatStatus
from .representations import SEAT_COLUMNS, seat_payload
from .seating import seat_label

logger = logging.getLogger("booking.expiry")

#: When several seats of one request break different rules, the first of
#: these that applies is reported, with the seats it applies to.
ERROR_PRECEDENCE: tuple[type[BookingError], ...] = (
    SeatNotFound,
    SeatBooked,
    HoldExpired,
    SeatLocked,
    NotLockedByYou,
    TooManyHolds,
)

_LOCKED_ROW_COLUMNS = (*SEAT_COLUMNS, "locked_by", "locked_at", "booked_by")


@dataclass
class SeatsResult:
    """What a lock, confirm or unlock answers: the holder and the seats as they now are."""

    holder: str
    seats: list[dict[str, Any]]
    lock_expires_at: datetime | None = None
    expires_in_seconds: float | None = None


@dataclass
class AdminResult:
    """What an admin action did: seats changed, and seats skipped with the reason."""

    changed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


class _RuleErrors:
    """Collects rule breaks per seat; raises the most important one, naming its seats."""

    def __init__(self) -> None:
        self._seats: dict[type[BookingError], list[int]] = defaultdict(list)

    def add(self, error: type[BookingError], seat_id: int) -> None:
        self._seats[error].append(seat_id)

    def raise_first(self) -> None:
        for error in ERROR_PRECEDENCE:
            if self._seats.get(error):
                seats = sorted(self._seats[error])
                raise error(_detail(error, seats), seats=seats)


def _detail(error: type[BookingError], seats: list[int]) -> str:
    listed = ", ".join(str(s) for s in seats)
    return f"{error.default_detail} Seat{'s' if len(seats) > 1 else ''}: {listed}."


@functools.cache
def _on_postgresql() -> bool:
    """The database is PostgreSQL (asked once: each ``connection.vendor`` is a lookup)."""
    return connections[DEFAULT_DB_ALIAS].vendor == "postgresql"


@contextmanager
def _write_transaction(*, piggyback: bool = False) -> Iterator[None]:
    """A transaction whose lock waits and lock failures surface as :class:`Busy`.

    PostgreSQL gives up a row-lock wait after ``lock_timeout`` (set per
    connection from BOOKING_LOCK_TIMEOUT_MS); SQLite after its busy timeout.
    With ``piggyback`` (the API's writes), on PostgreSQL, the BEGIN travels in
    the transaction's first round trip and the COMMIT in its last
    (:func:`booking.pg.transaction`): no round trip of their own.
    """
    try:
        if piggyback and _on_postgresql():
            with pg.transaction():
                yield
        else:
            with transaction.atomic():
                yield
    except OperationalError as exc:
        raise Busy() from exc
    except IntegrityError as exc:  # a constraint caught what a rule should have
        logger.error("integrity error in a seat write: %s", exc)
        raise Busy("The seats changed under this request; retry.") from exc


def _is_active_hold(row: dict[str, Any], now: datetime) -> bool:
    return row["status"] == SeatStatus.LOCKED and row["lock_expires_at"] > now


def _is_expired_hold(row: dict[str, Any], now: datetime) -> bool:
    return row["status"] == SeatStatus.LOCKED and row["lock_expires_at"] <= now


# The hot path's statements, written out for PostgreSQL and prepared once per
# connection (booking/pg.py): the same rows and writes as the ORM's, without
# building, compiling, parsing and planning a query per request. Seat ids travel
# as one array literal, so each statement has one shape whatever the ids.
_PG_LOCK_ROWS = pg.Prepared(
    "booking_lock_rows",
    """
    SELECT s.id, s.event_id, s.label, s.row, s.number, s.status, s.lock_expires_at, s.version,
           s.locked_by, s.locked_at, s.booked_by, e.hold_seconds
    FROM booking_seat AS s JOIN booking_event AS e ON e.id = s.event_id
    WHERE s.id = ANY(%s::bigint[])
    ORDER BY s.id
    FOR UPDATE OF s
    """,
    ["bigint[]"],
)
_PG_LOCK_ROWS_COLUMNS = (*_LOCKED_ROW_COLUMNS, "hold_seconds")
# The rules' clock, read after the row locks are granted: a hold that ran out
# while the request waited for them has run out. (The statements of one message
# share one STATEMENT_TIMESTAMP(): when the message arrived, before any wait.)
_PG_CLOCK_SQL = "SELECT clock_timestamp()"
# A lock request also takes the holder's advisory lock first (it serializes one
# holder's requests, so the hold limit is exact; taken before any row lock, it
# cannot deadlock) and, after the row locks, reads the holder's other holds in
# the events of these seats, to count the unexpired ones on that clock.
_PG_HOLDER_LOCK = pg.Prepared(
    "booking_holder_lock", "SELECT pg_advisory_xact_lock(hashtextextended(%s::text, 7))", ["text"]
)
_PG_HOLDER_HOLDS = pg.Prepared(
    "booking_holder_holds",
    """
    SELECT event_id, lock_expires_at FROM booking_seat
    WHERE status = 'locked' AND locked_by = %s::text AND NOT (id = ANY(%s::bigint[]))
      AND event_id IN (SELECT event_id FROM booking_seat WHERE id = ANY(%s::bigint[]))
    """,
    ["text", "bigint[]", "bigint[]"],
)


def _pg_array(ids: Sequence[int | None]) -> str:
    """Integers (or None) as a PostgreSQL array literal, ``{1,2,NULL}``."""
    return "{" + ",".join("NULL" if i is None else str(int(i)) for i in ids) + "}"


def _pg_text_array(values: Sequence[str]) -> str:
    """Strings as a PostgreSQL array literal, every element double-quoted and escaped."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _lock_seat_rows(seat_ids: Sequence[int], *, holder: str | None = None) -> tuple[list[dict[str, Any]], datetime]:
    """Row-lock the seats in id order; return them and the database's time, read after the locks.

    With ``holder``, first serialize that holder's requests and afterwards
    count its other unexpired holds per event (``row["held_in_event"]``; on
    PostgreSQL only: SQLite's IMMEDIATE transactions run one writer at a time
    anyway, and the caller counts). Raises :class:`SeatNotFound` (naming the
    missing ids) before any change.
    """
    ids = sorted(set(seat_ids))
    if not ids:
        raise InvalidRequest("No seat ids given.")
    if _on_postgresql():
        id_array = _pg_array(ids)
        if holder is None:
            seat_rows, clock = pg.run([(_PG_LOCK_ROWS, [id_array]), (_PG_CLOCK_SQL, ())])
        else:
            _, seat_rows, clock, holds = pg.run(
                [
                    (_PG_HOLDER_LOCK, ["booking-holder:" + holder]),
                    (_PG_LOCK_ROWS, [id_array]),
                    (_PG_CLOCK_SQL, ()),
                    (_PG_HOLDER_HOLDS, [holder, id_array, id_array]),
                ]
            )
        now = clock[0][0]
        rows = [dict(zip(_PG_LOCK_ROWS_COLUMNS, values, strict=True)) for values in seat_rows]
        if holder is not None:
            held: dict[int, int] = defaultdict(int)
            for event_id, expires in holds:
                if expires > now:
                    held[event_id] += 1
            for row in rows:
                row["held_in_event"] = held[row["event_id"]]
    else:
        rows = list(
            Seat.objects.select_for_update(of=("self",))
            .filter(pk__in=ids)
            .order_by("pk")
            .values(*_LOCKED_ROW_COLUMNS, hold_seconds=F("event__hold_seconds"), db_now=Now())
        )
        now = rows[0]["db_now"] if rows else None
    if len(rows) != len(ids):
        found = {row["id"] for row in rows}
        missing = [i for i in ids if i not in found]
        raise SeatNotFound(_detail(SeatNotFound, missing), seats=missing)
    return rows, now


#: The columns every seat write sets, in this order (with ``version`` bumped by one).
_SEAT_WRITE_COLUMNS = ("status", "locked_by", "locked_at", "lock_expires_at", "booked_by", "booked_at")
# One write on PostgreSQL: the seats' update and their audit rows (from arrays), one statement.
_PG_WRITE_SEATS = pg.Prepared(
    "booking_write_seats",
    """
    WITH changed AS (
        UPDATE booking_seat
        SET status = %s::varchar, locked_by = %s::varchar, locked_at = %s::timestamptz,
            lock_expires_at = %s::timestamptz, booked_by = %s::varchar, booked_at = %s::timestamptz,
            version = version + 1
        WHERE id = ANY(%s::bigint[])
        RETURNING 1
    )
    INSERT INTO booking_seatevent (seat_id, event_id, action, holder, actor_id, created_at)
    SELECT seat_id, event_id, action, holder, actor_id, STATEMENT_TIMESTAMP()
    FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[], %s::integer[])
         AS a(seat_id, event_id, action, holder, actor_id)
    """,
    ["varchar", "varchar", "timestamptz", "timestamptz", "varchar", "timestamptz"]
    + ["bigint[]", "bigint[]", "bigint[]", "text[]", "text[]", "integer[]"],
)
_PG_NO_AUDIT = ["{}"] * 5


def _write_seats(updates: list[tuple[list[int], dict[str, Any]]], audit: list[AuditRow]) -> None:
    """Apply each ``(seat ids, {column: value})`` update (all of :data:`_SEAT_WRITE_COLUMNS`)
    and insert the audit rows: a transaction's last write.

    Like every seat write, each update bumps the seats' ``version`` by one. On
    PostgreSQL it is one message (one prepared statement per update, the first
    one writing the audit rows too); elsewhere the ORM, one query each.
    """
    updates = [(ids, values) for ids, values in updates if ids]
    if not _on_postgresql():
        for ids, values in updates:
            Seat.objects.filter(pk__in=ids).update(**values, version=F("version") + 1)
        if audit:
            _save_audit(audit)
        return
    audit_arrays = [
        _pg_array([e.seat_id for e in audit]),
        _pg_array([e.event_id for e in audit]),
        _pg_text_array([e.action for e in audit]),
        _pg_text_array([e.holder for e in audit]),
        _pg_array([e.actor_id for e in audit]),
    ]
    step = []
    for n, (ids, values) in enumerate(updates):
        row = [values[column] for column in _SEAT_WRITE_COLUMNS]
        if len(values) != len(row):
            raise ValueError(f"unknown seat columns in {sorted(values)}")
        step.append((_PG_WRITE_SEATS, [*row, _pg_array(ids), *(audit_arrays if n == 0 else _PG_NO_AUDIT)]))
    if not step:
        step.append((_PG_WRITE_SEATS, [None] * 6 + ["{}", *audit_arrays]))
    pg.run(step, commit=True)


class AuditRow(NamedTuple):
    """One audit row to write (a :class:`SeatEvent` without the model instance)."""

    seat_id: int
    event_id: int
    action: str
    holder: str
    actor_id: int | None


def _audit(rows: list[dict[str, Any]], action: str, *, actor, holder: str | None = None) -> list[AuditRow]:
    actor_id = getattr(actor, "pk", None)
    return [
        AuditRow(
            row["id"],
            row["event_id"],
            str(action),
            holder if holder is not None else (row.get("locked_by") or row.get("booked_by") or ""),
            actor_id,
        )
        for row in rows
    ]


def _save_audit(audit: list[AuditRow]) -> None:
    """The audit rows through the ORM (the PostgreSQL hot path writes them in its own statement)."""
    SeatEvent.objects.bulk_create([SeatEvent(**row._asdict()) for row in audit], batch_size=500)


def _changed(payloads: list[dict[str, Any]], changed_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ids = {row["id"] for row in changed_rows}
    return [payload for payload in payloads if payload["id"] in ids]


def _push_after_commit(payloads: list[dict[str, Any]]) -> None:
    if payloads:
        pg.on_commit(lambda: publish_seat_changes(payloads))


def _active_holds_per_event(holder: str, event_ids: set[int], exclude_ids: list[int]) -> dict[int, int]:
    """The holder's unexpired holds per event, besides ``exclude_ids`` (SQLite: PostgreSQL counts
    them in the row-lock step, see :func:`_lock_seat_rows`)."""
    counts = (
        Seat.objects.filter(
            event_id__in=event_ids,
            status=SeatStatus.LOCKED,
            locked_by=holder,
            lock_expires_at__gt=Now(),
        )
        .exclude(pk__in=exclude_ids)
        .values("event_id")
        .annotate(n=Count("id"))
        .values_list("event_id", "n")
    )
    return dict(counts)


# --- The API's three writes ---------------------------------------------------


def seats_lock(*, seat_ids: Sequence[int], holder: str, actor=None) -> SeatsResult:
    """Hold every seat for ``holder``, or none: take free or expired seats, renew own holds.

    A renewal gives a full ``hold_seconds`` from now, but never past the
    ceiling (BOOKING_MAX_HOLD_SECONDS) counted from when the hold was first taken.
    """
    with _write_transaction(piggyback=True):
        rows, now = _lock_seat_rows(seat_ids, holder=holder)
        errors = _RuleErrors()
        for row in rows:
            if row["status"] == SeatStatus.BOOKED:
                errors.add(SeatBooked, row["id"])
            elif _is_active_hold(row, now) and row["locked_by"] != holder:
                errors.add(SeatLocked, row["id"])
        errors.raise_first()

        requested_per_event: dict[int, int] = defaultdict(int)
        for row in rows:
            requested_per_event[row["event_id"]] += 1
        if "held_in_event" in rows[0]:
            held = {row["event_id"]: row["held_in_event"] for row in rows}
        else:
            held = _active_holds_per_event(holder, set(requested_per_event), [row["id"] for row in rows])
        for event_id, requested in requested_per_event.items():
            if held.get(event_id, 0) + requested > conf.max_holds():
                for row in rows:
                    if row["event_id"] == event_id:
                        errors.add(TooManyHolds, row["id"])
        errors.raise_first()

        # New expiry per seat, then one UPDATE per distinct (locked_at, expiry).
        groups: dict[tuple[datetime, datetime], list[int]] = defaultdict(list)
        audit: list[AuditRow] = []
        for row in rows:
            hold = timedelta(seconds=row["hold_seconds"])
            if _is_active_hold(row, now):  # a renewal by the same holder
                ceiling = row["locked_at"] + timedelta(seconds=conf.max_hold_seconds(row["hold_seconds"]))
                locked_at = row["locked_at"]
                expires = max(row["lock_expires_at"], min(now + hold, ceiling))
                audit += _audit([row], SeatAction.EXTENDED, actor=actor, holder=holder)
            else:
                if _is_expired_hold(row, now):  # the old hold's expiry is recorded once, here
                    audit += _audit([row], SeatAction.EXPIRED, actor=None, holder=row["locked_by"])
                    _log_expiry(row)
                locked_at, expires = now, now + hold
                audit += _audit([row], SeatAction.LOCKED, actor=actor, holder=holder)
            groups[(locked_at, expires)].append(row["id"])
            row.update(status=SeatStatus.LOCKED, locked_by=holder, locked_at=locked_at, lock_expires_at=expires)

        _write_seats(
            [
                (
                    ids,
                    {
                        "status": SeatStatus.LOCKED.value,
                        "locked_by": holder,
                        "locked_at": locked_at,
                        "lock_expires_at": expires,
                        "booked_by": "",
                        "booked_at": None,
                    },
                )
                for (locked_at, expires), ids in groups.items()
            ],
            audit,
        )
        for row in rows:
            row["version"] += 1
        payloads = [seat_payload(row, now) for row in rows]
        _push_after_commit(payloads)

    first_expiry = min(row["lock_expires_at"] for row in rows)
    return SeatsResult(
        holder=holder,
        seats=payloads,
        lock_expires_at=first_expiry,
        expires_in_seconds=round((first_expiry - now).total_seconds(), 3),
    )


def _holder_last_hold_expired(holder: str, seat_ids: list[int]) -> set[int]:
    """The seats among ``seat_ids`` whose last audit row for ``holder`` is an expiry."""
    last_action = SeatEvent.objects.filter(seat_id=OuterRef("pk"), holder=holder).order_by("-created_at", "-id")
    return set(
        Seat.objects.filter(pk__in=seat_ids)
        .annotate(last_action=Subquery(last_action.values("action")[:1]))
        .filter(last_action=SeatAction.EXPIRED)
        .values_list("pk", flat=True)
    )


def seats_confirm(*, seat_ids: Sequence[int], holder: str, actor=None) -> SeatsResult:
    """Book every seat that ``holder`` holds unexpired, or none.

    Seats the holder already booked count as done (a retried confirm gets the
    same answer); a holder whose hold ran out gets ``hold_expired``.
    """
    with _write_transaction(piggyback=True):
        rows, now = _lock_seat_rows(seat_ids)
        errors = _RuleErrors()
        to_book: list[dict[str, Any]] = []
        not_held: list[int] = []
        for row in rows:
            if row["status"] == SeatStatus.BOOKED:
                if row["booked_by"] != holder:
                    errors.add(SeatBooked, row["id"])
            elif _is_active_hold(row, now) and row["locked_by"] == holder:
                to_book.append(row)
            elif _is_expired_hold(row, now) and row["locked_by"] == holder:
                errors.add(HoldExpired, row["id"])
            else:
                not_held.append(row["id"])
        if not_held:
            expired = _holder_last_hold_expired(holder, not_held)
            for seat_id in not_held:
                errors.add(HoldExpired if seat_id in expired else NotLockedByYou, seat_id)
        errors.raise_first()

        if to_book:
            _write_seats(
                [
                    (
                        [row["id"] for row in to_book],
                        {
                            "status": SeatStatus.BOOKED.value,
                            "booked_by": holder,
                            "booked_at": now,
                            "locked_by": "",
                            "locked_at": None,
                            "lock_expires_at": None,
                        },
                    )
                ],
                _audit(to_book, SeatAction.BOOKED, actor=actor, holder=holder),
            )
        for row in to_book:
            row.update(status=SeatStatus.BOOKED, lock_expires_at=None, version=row["version"] + 1)
        payloads = [seat_payload(row, now) for row in rows]
        _push_after_commit(_changed(payloads, to_book))
    return SeatsResult(holder=holder, seats=payloads)


def seats_unlock(*, seat_ids: Sequence[int], holder: str, actor=None) -> SeatsResult:
    """Release the holder's holds among the seats, all or none; free seats are left as they are."""
    with _write_transaction(piggyback=True):
        rows, now = _lock_seat_rows(seat_ids)
        errors = _RuleErrors()
        to_release: list[dict[str, Any]] = []
        for row in rows:
            if row["status"] == SeatStatus.BOOKED:
                errors.add(SeatBooked, row["id"])
            elif _is_active_hold(row, now):
                if row["locked_by"] == holder:
                    to_release.append(row)
                else:
                    errors.add(NotLockedByYou, row["id"])
        errors.raise_first()

        if to_release:
            _write_seats(
                [([row["id"] for row in to_release], dict(_AVAILABLE))],
                _audit(to_release, SeatAction.UNLOCKED, actor=actor, holder=holder),
            )
        for row in to_release:
            row.update(status=SeatStatus.AVAILABLE, lock_expires_at=None, version=row["version"] + 1)
        payloads = [seat_payload(row, now) for row in rows]
        _push_after_commit(_changed(payloads, to_release))
    return SeatsResult(holder=holder, seats=payloads)


_AVAILABLE = {
    "status": SeatStatus.AVAILABLE.value,
    "locked_by": "",
    "locked_at": None,
    "lock_expires_at": None,
    "booked_by": "",
    "booked_at": None,
}


def _set_available(seat_ids: list[int]) -> None:
    """Free the seats; like every seat write, it bumps their ``version`` by one."""
    Seat.objects.filter(pk__in=seat_ids).update(**_AVAILABLE, version=F("version") + 1)


# --- Expiry -------------------------------------------------------------------


def _log_expiry(row: dict[str, Any]) -> None:
    logger.info(_expiry_line(row))


def _expiry_line(row: dict[str, Any]) -> str:
    expires = row["lock_expires_at"]
    if isinstance(expires, datetime):
        expires = expires.isoformat()
    return (
        f"Seat {row['label']} (id {row['id']}) of event {row['event_id']} released: "
        f"hold by {row['locked_by']} expired at {expires or '?'}"
    )


#: Seats per log record of a sweep: one line per seat, but not one record (with its
#: caller lookup and flush) per seat, which cost more than the database's work.
SWEEP_LOG_LINES_PER_RECORD = 500


def _log_expiries(rows: list[dict[str, Any]]) -> None:
    if not rows or not logger.isEnabledFor(logging.INFO):
        return
    for start in range(0, len(rows), SWEEP_LOG_LINES_PER_RECORD):
        logger.info("\n".join(_expiry_line(row) for row in rows[start : start + SWEEP_LOG_LINES_PER_RECORD]))


# The UPDATE finds its rows by primary key (= ANY(ARRAY(...))), not by a hash join
# over the whole seat table; the old holder and expiry come from the locked rows.
# The old expiry comes back as text in Python's isoformat() (UTC), so that a
# sweep of 100 000 holds does not parse 100 000 timestamps only to print them.
_PG_RELEASE_SQL = """
WITH expired AS (
    SELECT id, locked_by, lock_expires_at
    FROM booking_seat
    WHERE status = 'locked' AND lock_expires_at <= STATEMENT_TIMESTAMP() {extra}
    ORDER BY id
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), released AS (
    UPDATE booking_seat AS s
    SET status = 'available', locked_by = '', locked_at = NULL, lock_expires_at = NULL, version = s.version + 1
    WHERE s.id = ANY(ARRAY(SELECT id FROM expired))
    RETURNING s.id, s.event_id, s.label, s.row, s.number, s.version
), freed AS (
    SELECT r.id, r.event_id, r.label, r.row, r.number, e.locked_by, e.lock_expires_at, r.version
    FROM released AS r JOIN expired AS e ON e.id = r.id
), audit AS (
    INSERT INTO booking_seatevent (seat_id, event_id, action, holder, created_at)
    SELECT id, event_id, 'expired', locked_by, STATEMENT_TIMESTAMP() FROM freed
)
SELECT id, event_id, label, row, number, locked_by,
       regexp_replace(to_char(lock_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '\\.000000$', '')
       || '+00:00',
       version
FROM freed ORDER BY id
"""
#: The freed seats, with their old holder and expiry and their new version.
_RELEASED_COLUMNS = ("id", "event_id", "label", "row", "number", "locked_by", "lock_expires_at", "version")


def _release_batch_postgresql(*, event_id: int | None, seat_ids: Sequence[int] | None, batch: int) -> list[dict]:
    """One statement: lock the expired rows (skipping rows a lock request holds),
    free them and write their audit rows; returns the freed seats with their old holder."""
    extra, params = "", {"batch": batch}
    if event_id is not None:
        extra += " AND event_id = %(event_id)s"
        params["event_id"] = event_id
    if seat_ids is not None:
        extra += " AND id = ANY(%(seat_ids)s)"
        params["seat_ids"] = list(seat_ids)
    with connection.cursor() as cursor:
        cursor.execute(_PG_RELEASE_SQL.format(extra=extra), params)
        return [dict(zip(_RELEASED_COLUMNS, values, strict=True)) for values in cursor.fetchall()]


def _release_batch_generic(*, event_id: int | None, seat_ids: Sequence[int] | None, batch: int) -> list[dict]:
    """SQLite: the IMMEDIATE transaction already excludes every other writer."""
    expired = _expired_holds(event_id=event_id, seat_ids=seat_ids)
    rows = list(expired.order_by("pk").values(*_RELEASED_COLUMNS)[:batch])
    ids = [row["id"] for row in rows]
    for start in range(0, len(ids), 500):
        _set_available(ids[start : start + 500])
    for row in rows:
        row["version"] += 1
    _save_audit(_audit(rows, SeatAction.EXPIRED, actor=None))
    return rows


def _expired_holds(*, event_id: int | None = None, seat_ids: Sequence[int] | None = None):
    qs = Seat.objects.filter(status=SeatStatus.LOCKED, lock_expires_at__lte=Now())
    if event_id is not None:
        qs = qs.filter(event_id=event_id)
    if seat_ids is not None:
        qs = qs.filter(pk__in=list(seat_ids))
    return qs


def _release_batches(*, event_id: int | None, seat_ids: Sequence[int] | None, batch: int) -> int:
    """Release batch after batch, each its own transaction, until one comes back short."""
    release_batch = _release_batch_postgresql if _on_postgresql() else _release_batch_generic
    total = 0
    while True:
        with _write_transaction():
            rows = release_batch(event_id=event_id, seat_ids=seat_ids, batch=batch)
            _log_expiries(rows)
            _push_after_commit(
                [
                    {
                        "id": row["id"],
                        "event": row["event_id"],
                        "label": row["label"],
                        "row": row["row"],
                        "number": row["number"],
                        "status": str(SeatStatus.AVAILABLE),
                        "lockExpiresAt": None,
                        "version": row["version"],
                    }
                    for row in rows
                ]
            )
        total += len(rows)
        if len(rows) < batch:
            return total


def _release_batches_in_thread(**kwargs) -> int:
    try:
        return _release_batches(**kwargs)
    finally:
        connection.close()  # this thread's own connection


def holds_release_expired(
    *,
    event_id: int | None = None,
    seat_ids: Sequence[int] | None = None,
    batch_size: int | None = None,
    workers: int = 1,
) -> int:
    """Free every hold that has expired (optionally only of one event or some seats).

    Set-based and idempotent: each batch is one statement on PostgreSQL,
    skipping rows that a lock request holds (it records that expiry itself),
    so two sweeps at once, or a sweep and a lock, record each expiry once.
    ``workers`` > 1 (the beat sweep, on PostgreSQL, outside a transaction) runs
    that many sweeps at once on their own connections: SKIP LOCKED gives each
    its own rows, and the database's index work spreads over its cores.
    Returns how many holds were released.
    """
    batch = batch_size or conf.sweep_batch()
    kwargs = {"event_id": event_id, "seat_ids": seat_ids, "batch": batch}
    if workers <= 1 or not _on_postgresql() or connection.in_atomic_block:
        return _release_batches(**kwargs)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
        futures = [pool.submit(_release_batches_in_thread, **kwargs) for _ in range(workers)]
        return sum(future.result() for future in futures)


def holds_release_expired_if_any(*, event_id: int | None = None, seat_ids: Sequence[int] | None = None) -> int:
    """For reads: release expired holds among the seats they return, if there are any.

    A cheap indexed check comes first, so a read takes no write lock when
    nothing has expired; a busy database never fails the read (reads show
    expired holds as available regardless).
    """
    if not _expired_holds(event_id=event_id, seat_ids=seat_ids).exists():
        return 0
    try:
        return holds_release_expired(event_id=event_id, seat_ids=seat_ids)
    except (Busy, DatabaseError):
        logger.warning("read-path release of expired holds skipped: database busy")
        return 0


# --- Events -------------------------------------------------------------------


def event_create_with_seats(
    *, name: str, starts_at: datetime, rows: Sequence[str], seats_per_row: int, hold_seconds: int | None = None
) -> Event:
    """Create an event and its block of seats (``rows`` × 1..``seats_per_row``), all or nothing."""
    with transaction.atomic():
        event = Event.objects.create(
            name=name, starts_at=starts_at, **({"hold_seconds": hold_seconds} if hold_seconds else {})
        )
        seats_add_block(event=event, rows=rows, seats_per_row=seats_per_row)
    return event


def seats_add_block(*, event: Event, rows: Sequence[str], seats_per_row: int, first_number: int = 1) -> int:
    """Add a block of seats to an event, all or nothing; a label that exists already is an error."""
    labels = [(row, number) for row in rows for number in range(first_number, first_number + seats_per_row)]
    try:
        with transaction.atomic():
            Seat.objects.bulk_create(
                (Seat(event=event, label=seat_label(row, number), row=row, number=number) for row, number in labels),
                batch_size=2000,
            )
    except IntegrityError as exc:
        raise InvalidRequest("Some of these seats already exist for this event.") from exc
    return len(labels)


# --- Admin actions ------------------------------------------------------------
#
# The box office's writes, called by booking/admin.py. The same row locks (id
# order), rules checked under the lock on the database clock, audit rows in the
# same transaction and live push after commit as the API's; but best effort per
# seat: every seat the rules allow changes, every other one is skipped with a
# reason. Seats are taken in chunks of ADMIN_CHUNK, one transaction each, so a
# whole event's worth of seats never sits under one long lock.

ADMIN_CHUNK = 500


def _clock(value: datetime | None) -> str:
    from django.utils import timezone

    return timezone.localtime(value).strftime("%H:%M:%S") if value else "?"


def _admin_describe(row: dict[str, Any], now: datetime) -> str:
    """A seat's state as the box office reads it, at ``now`` (the database clock)."""
    if row["status"] == SeatStatus.BOOKED:
        return f"booked by {row['booked_by']}"
    if _is_active_hold(row, now):
        return f"held by {row['locked_by']} until {_clock(row['lock_expires_at'])}"
    if _is_expired_hold(row, now):
        return f"available (the hold by {row['locked_by']} expired at {_clock(row['lock_expires_at'])})"
    return "available"


def _admin_run(seat_ids: Sequence[int], apply) -> AdminResult:
    """Lock each chunk of seats in id order and let ``apply(rows, now)`` decide and write.

    ``apply`` returns ``(changed_ids, skipped)``; a chunk counts only once its
    transaction has committed. Seats deleted meanwhile and chunks that cannot
    get their row locks in time are skipped with the reason.
    """
    result = AdminResult()
    ids = sorted(set(seat_ids))
    for start in range(0, len(ids), ADMIN_CHUNK):
        chunk = ids[start : start + ADMIN_CHUNK]
        while chunk:
            try:
                with _write_transaction():
                    rows, now = _lock_seat_rows(chunk)
                    changed, skipped = apply(rows, now)
            except SeatNotFound as exc:
                gone = set(exc.seats or chunk)
                result.skipped.update({seat_id: "no longer exists" for seat_id in gone})
                chunk = [seat_id for seat_id in chunk if seat_id not in gone]
                continue
            except Busy:
                result.skipped.update({seat_id: "busy (another request holds it); try again" for seat_id in chunk})
                break
            result.changed.extend(changed)
            result.skipped.update(skipped)
            break
    return result


def seats_admin_release(*, seat_ids: Sequence[int], actor=None) -> AdminResult:
    """Release the live holds among the seats; seats not held are skipped."""

    def apply(rows, now):
        to_release = [row for row in rows if _is_active_hold(row, now)]
        skipped = {row["id"]: f"not held: {_admin_describe(row, now)}" for row in rows if not _is_active_hold(row, now)}
        if to_release:
            _set_available([row["id"] for row in to_release])
            _save_audit(_audit(to_release, SeatAction.ADMIN_RELEASED, actor=actor))
            for row in to_release:
                row.update(status=SeatStatus.AVAILABLE, lock_expires_at=None, version=row["version"] + 1)
            _push_after_commit([seat_payload(row, now) for row in to_release])
        return [row["id"] for row in to_release], skipped

    return _admin_run(seat_ids, apply)


def seats_admin_book(*, seat_ids: Sequence[int], holder: str, actor=None) -> AdminResult:
    """Book the seats for ``holder``: free seats, expired holds and the holder's own holds.

    A live hold by anyone else and every booked seat is skipped. Taking over an
    expired hold records its expiry first, as a lock does.
    """
    holder = (holder or "").strip()
    if not holder or len(holder) > 150:
        raise InvalidRequest("A holder of 1 to 150 characters is needed.")

    def apply(rows, now):
        to_book: list[dict[str, Any]] = []
        skipped: dict[int, str] = {}
        audit: list[AuditRow] = []
        for row in rows:
            if row["status"] == SeatStatus.BOOKED:
                skipped[row["id"]] = f"already {_admin_describe(row, now)}"
                continue
            if _is_active_hold(row, now) and row["locked_by"] != holder:
                skipped[row["id"]] = _admin_describe(row, now)
                continue
            if _is_expired_hold(row, now):
                audit += _audit([row], SeatAction.EXPIRED, actor=None, holder=row["locked_by"])
                _log_expiry(row)
            audit += _audit([row], SeatAction.ADMIN_BOOKED, actor=actor, holder=holder)
            to_book.append(row)
        if to_book:
            Seat.objects.filter(pk__in=[row["id"] for row in to_book]).update(
                status=SeatStatus.BOOKED,
                booked_by=holder,
                booked_at=now,
                locked_by="",
                locked_at=None,
                lock_expires_at=None,
                version=F("version") + 1,
            )
            _save_audit(audit)
            for row in to_book:
                row.update(status=SeatStatus.BOOKED, lock_expires_at=None, version=row["version"] + 1)
            _push_after_commit([seat_payload(row, now) for row in to_book])
        return [row["id"] for row in to_book], skipped

    return _admin_run(seat_ids, apply)


def seats_admin_cancel(*, seat_ids: Sequence[int], actor=None) -> AdminResult:
    """Cancel the bookings among the seats (back to available); seats not booked are skipped."""

    def apply(rows, now):
        to_cancel = [row for row in rows if row["status"] == SeatStatus.BOOKED]
        skipped = {
            row["id"]: f"not booked: {_admin_describe(row, now)}" for row in rows if row["status"] != SeatStatus.BOOKED
        }
        if to_cancel:
            _set_available([row["id"] for row in to_cancel])
            _save_audit(_audit(to_cancel, SeatAction.ADMIN_CANCELLED, actor=actor))
            for row in to_cancel:
                row.update(status=SeatStatus.AVAILABLE, lock_expires_at=None, version=row["version"] + 1)
            _push_after_commit([seat_payload(row, now) for row in to_cancel])
        return [row["id"] for row in to_cancel], skipped

    return _admin_run(seat_ids, apply)
