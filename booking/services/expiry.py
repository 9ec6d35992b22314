"""The expiry engine: free the holds whose time ran out, record each expiry once.

Beat's task and the ``release_expired_holds`` command call
:func:`holds_release_expired`; reads call :func:`holds_release_expired_if_any`
for the seats they are about to return. A lock that takes over an expired
hold records that expiry itself (:mod:`booking.services.holds`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from django.db import DatabaseError, connection

from .. import activity, conf
from ..errors import Busy
from ..holders import loggable
from ..models import Seat, SeatAction, SeatStatus, WebhookEventType
from . import sql
from .pipeline import (
    AVAILABLE,
    audit_rows,
    note_changes,
    note_seat_map_changes,
    push_after_commit,
    save_audit,
    update_seats,
    write_transaction,
)
from .webhooks import webhooks_emit_holds

logger = logging.getLogger("booking.expiry")

#: Seats per log record of a sweep: one line per seat, but not one record (with its
#: caller lookup and flush) per seat, which cost more than the database's work.
SWEEP_LOG_LINES_PER_RECORD = 500


def _expiry_line(row: dict[str, Any]) -> str:
    """One seat's line; stored text escaped (booking.holders.loggable), so a holder or label
    with a line break in the database stays on its line."""
    expires = row["lock_expires_at"]
    when = expires.isoformat() if isinstance(expires, datetime) else "?"
    return (
        f"Seat {loggable(row['label'])} (id {row['id']}) of event {row['event_id']} released: "
        f"hold by {loggable(row['locked_by'])} expired at {when}"
    )


def log_expiry(row: dict[str, Any]) -> None:
    logger.info(_expiry_line(row))


def _log_expiries(rows: list[dict[str, Any]]) -> None:
    if not rows or not logger.isEnabledFor(logging.INFO):
        return
    for start in range(0, len(rows), SWEEP_LOG_LINES_PER_RECORD):
        logger.info("\n".join(_expiry_line(row) for row in rows[start : start + SWEEP_LOG_LINES_PER_RECORD]))


def _expired_holds(*, event_id: int | None, seat_ids: Sequence[int] | None):
    queryset = Seat.objects.expired_holds()
    if event_id is not None:
        queryset = queryset.filter(event_id=event_id)
    if seat_ids is not None:
        queryset = queryset.filter(pk__in=list(seat_ids))
    return queryset


def _release_batch(*, event_id: int | None, seat_ids: Sequence[int] | None, batch: int) -> int:
    """One transaction: lock up to ``batch`` expired holds, free them, record their expiry.

    Rows a lock request holds are skipped (it records that expiry itself), so
    two sweeps at once, or a sweep and a lock, record each expiry once.
    """
    ids = list(seat_ids) if seat_ids is not None else None
    with write_transaction():
        if connection.vendor == "postgresql":
            rows = sql.release_expired_batch(batch=batch, event_id=event_id, seat_ids=ids)
        else:
            rows = _release_batch_orm(batch=batch, event_id=event_id, seat_ids=ids)
        _log_expiries(rows)
        note_seat_map_changes((row["event_id"], row["id"]) for row in rows)
        if connection.vendor == "postgresql":  # the ORM's batch wrote its audit rows through save_audit
            note_changes(
                activity.Change(str(SeatAction.EXPIRED), row["event_id"], row["id"], row["locked_by"], None)
                for row in rows
            )
        for row in rows:
            row.update(live_status=SeatStatus.AVAILABLE, live_expires_at=None)
        push_after_commit(rows)
        webhooks_emit_holds(WebhookEventType.HOLD_EXPIRED, rows, holders=[row["locked_by"] for row in rows])
    return len(rows)


def _release_batch_orm(*, batch: int, event_id: int | None, seat_ids: list[int] | None) -> list[dict[str, Any]]:
    """The same batch in the ORM's three statements, where the database has no data-modifying
    CTE (SQLite, whose IMMEDIATE transaction already excludes every other writer)."""
    rows = list(
        _expired_holds(event_id=event_id, seat_ids=seat_ids)
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("pk")
        .values(*sql.RELEASED_COLUMNS)[:batch]
    )
    update_seats([row["id"] for row in rows], **AVAILABLE)
    save_audit(audit_rows(rows, SeatAction.EXPIRED, actor=None))
    for row in rows:
        row["version"] += 1
    return rows


def _release_batches(*, event_id: int | None, seat_ids: Sequence[int] | None, batch: int) -> int:
    """Release batch after batch, each its own transaction, until one comes back short."""
    total = 0
    while True:
        released = _release_batch(event_id=event_id, seat_ids=seat_ids, batch=batch)
        total += released
        if released < batch:
            return total


def _release_batches_in_thread(**kwargs: Any) -> int:
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

    Set-based and idempotent. ``workers`` > 1 (the beat sweep, on PostgreSQL)
    runs that many sweeps at once on their own connections: SKIP LOCKED gives
    each its own rows, and the database's index work spreads over its cores.
    Returns how many holds were released.
    """
    batch = batch_size or conf.sweep_batch()
    kwargs: dict[str, Any] = {"event_id": event_id, "seat_ids": seat_ids, "batch": batch}
    # Inside a transaction (a test's), other connections would not see its rows.
    if workers <= 1 or connection.vendor != "postgresql" or connection.in_atomic_block:
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
