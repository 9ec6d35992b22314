"""The box office's writes, called by booking/admin.py.

The same steps as the API's (:mod:`booking.services.pipeline`), but best
effort per seat: every seat the rules allow changes, every other one is
skipped with a reason. Seats are taken in chunks of :data:`ADMIN_CHUNK`, one
transaction each, so a whole event's worth of seats never sits under one long lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from ..errors import Busy, InvalidRequest, SeatNotFound
from ..holders import holder_problem
from ..models import Booking, SeatAction, SeatStatus, WebhookEventType
from .blocks import block_rows, unblock_rows
from .bookings import booking_create, booking_payload_of
from .expiry import log_expiry
from .pipeline import (
    AVAILABLE,
    AuditRow,
    audit_rows,
    holds_live,
    is_expired_hold,
    lock_seat_rows,
    mark_written,
    push_after_commit,
    save_audit,
    update_seats,
    write_transaction,
)
from .webhooks import webhooks_emit, webhooks_emit_holds

ADMIN_CHUNK = 500

#: ``apply(rows, now)`` writes what the rules allow and returns (changed ids, {skipped id: reason}).
Apply = Callable[[list[dict[str, Any]], datetime], tuple[list[int], dict[int, str]]]


@dataclass
class AdminResult:
    """What an admin action did: seats changed, and seats skipped with the reason."""

    changed: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    #: The bookings the action made (booking for a holder).
    references: list[str] = field(default_factory=list)


def _clock(value: datetime | None) -> str:
    return timezone.localtime(value).strftime("%H:%M:%S") if value else "?"


def _describe(row: dict[str, Any]) -> str:
    """A seat's live state as the box office reads it."""
    if row["live_status"] == SeatStatus.BOOKED:
        return f"booked by {row['booked_by']}"
    if row["live_status"] == SeatStatus.LOCKED:
        return f"held by {row['locked_by']} until {_clock(row['lock_expires_at'])}"
    if row["live_status"] == SeatStatus.BLOCKED:
        return "blocked"
    if is_expired_hold(row):
        return f"available (the hold by {row['locked_by']} expired at {_clock(row['lock_expires_at'])})"
    return "available"


def _run(seat_ids: Sequence[int], apply: Apply, committed: Callable[[], None] = lambda: None) -> AdminResult:
    """Lock each chunk of seats in id order and let ``apply`` decide and write.

    A chunk counts only once its transaction has committed (then ``committed``
    is called). Seats deleted meanwhile and chunks that cannot get their row
    locks in time are skipped with the reason.
    """
    result = AdminResult()
    ids = sorted(set(seat_ids))
    for start in range(0, len(ids), ADMIN_CHUNK):
        chunk = ids[start : start + ADMIN_CHUNK]
        while chunk:
            try:
                with write_transaction():
                    rows, now = lock_seat_rows(chunk)
                    changed, skipped = apply(rows, now)
            except SeatNotFound as exc:
                gone = set(exc.seats or chunk)
                result.skipped.update({seat_id: "no longer exists" for seat_id in gone})
                chunk = [seat_id for seat_id in chunk if seat_id not in gone]
                continue
            except Busy:
                result.skipped.update({seat_id: "busy (another request holds it); try again" for seat_id in chunk})
                break
            committed()
            result.changed.extend(changed)
            result.skipped.update(skipped)
            break
    return result


def _free(rows: list[dict[str, Any]], action: str, actor: Any) -> None:
    """Make the seats available, with an audit row each and a live push."""
    holders = [row["locked_by"] for row in rows]
    update_seats([row["id"] for row in rows], **AVAILABLE)
    save_audit(audit_rows(rows, action, actor=actor))
    mark_written(rows, live_status=SeatStatus.AVAILABLE)
    push_after_commit(rows)
    if rows:
        webhooks_emit_holds(WebhookEventType.HOLD_RELEASED, rows, holders=holders, at=rows[0]["db_now"])


def seats_admin_release(*, seat_ids: Sequence[int], actor: Any = None) -> AdminResult:
    """Release the live holds among the seats; seats not held are skipped."""

    def apply(rows: list[dict[str, Any]], now: datetime) -> tuple[list[int], dict[int, str]]:
        held = [row for row in rows if row["live_status"] == SeatStatus.LOCKED]
        skipped = {row["id"]: f"not held: {_describe(row)}" for row in rows if row["live_status"] != SeatStatus.LOCKED}
        _free(held, SeatAction.ADMIN_RELEASED, actor)
        return [row["id"] for row in held], skipped

    return _run(seat_ids, apply)


def seats_admin_book(*, seat_ids: Sequence[int], holder: str, actor: Any = None) -> AdminResult:
    """Book the seats for ``holder``: free seats, expired holds and the holder's own holds.

    A live hold by anyone else and every booked seat is skipped. Taking over an
    expired hold records its expiry first, as a lock does.
    """
    holder = (holder or "").strip()
    problem = holder_problem(holder)
    if problem is not None:
        raise InvalidRequest(problem)

    # One booking per event for the whole action, made by the first chunk that books a seat
    # of that event; a later chunk adds to it once that chunk has committed.
    bookings: dict[int, Booking] = {}
    made: dict[int, Booking] = {}  # by the chunk being written

    def apply(rows: list[dict[str, Any]], now: datetime) -> tuple[list[int], dict[int, str]]:
        to_book: list[dict[str, Any]] = []
        skipped: dict[int, str] = {}
        audit: list[AuditRow] = []
        taken_over: list[tuple[dict[str, Any], str]] = []
        made.clear()
        for row in rows:
            if row["live_status"] == SeatStatus.BOOKED:
                skipped[row["id"]] = f"already {_describe(row)}"
                continue
            if row["live_status"] == SeatStatus.LOCKED and not holds_live(row, holder):
                skipped[row["id"]] = _describe(row)
                continue
            booking = bookings.get(row["event_id"]) or made.get(row["event_id"])
            if booking is None:
                booking = made[row["event_id"]] = booking_create(
                    event_id=row["event_id"], holder=holder, order_id=None, created_at=now
                )
            if is_expired_hold(row):
                audit += audit_rows([row], SeatAction.EXPIRED, actor=None, holder=row["locked_by"])
                log_expiry(row)
                taken_over.append((row, row["locked_by"]))
            audit += audit_rows([row], SeatAction.ADMIN_BOOKED, actor=actor, holder=holder, booking_id=booking.pk)
            row["booking_id"] = booking.pk
            to_book.append(row)
        for booking in {**bookings, **made}.values():
            update_seats(
                [row["id"] for row in to_book if row["booking_id"] == booking.pk],
                **{
                    **AVAILABLE,
                    "status": SeatStatus.BOOKED.value,
                    "booked_by": holder,
                    "booked_at": now,
                    "booking_id": booking.pk,
                },
            )
        save_audit(audit)
        mark_written(to_book, live_status=SeatStatus.BOOKED)
        push_after_commit(to_book)
        webhooks_emit_holds(
            WebhookEventType.HOLD_EXPIRED, [r for r, _ in taken_over], holders=[h for _, h in taken_over], at=now
        )
        for booking_id in sorted({row["booking_id"] for row in to_book}):
            webhooks_emit(WebhookEventType.BOOKING_CONFIRMED, booking_payload_of(booking_id), at=now)
        return [row["id"] for row in to_book], skipped

    result = _run(seat_ids, apply, committed=lambda: bookings.update(made))
    result.references = sorted(booking.reference for booking in bookings.values())
    return result


def seats_admin_cancel(*, seat_ids: Sequence[int], actor: Any = None) -> AdminResult:
    """Cancel the bookings among the seats (back to available); seats not booked are skipped."""

    def apply(rows: list[dict[str, Any]], now: datetime) -> tuple[list[int], dict[int, str]]:
        booked = [row for row in rows if row["live_status"] == SeatStatus.BOOKED]
        skipped = {
            row["id"]: f"not booked: {_describe(row)}" for row in rows if row["live_status"] != SeatStatus.BOOKED
        }
        update_seats([row["id"] for row in booked], **AVAILABLE)
        save_audit(
            [
                audit
                for row in booked
                for audit in audit_rows([row], SeatAction.ADMIN_CANCELLED, actor=actor, booking_id=row["booking_id"])
            ]
        )
        mark_written(booked, live_status=SeatStatus.AVAILABLE)
        push_after_commit(booked)
        for booking_id in sorted({row["booking_id"] for row in booked}):
            webhooks_emit(WebhookEventType.BOOKING_CANCELLED, booking_payload_of(booking_id), at=now)
        return [row["id"] for row in booked], skipped

    return _run(seat_ids, apply)


def seats_admin_block(*, seat_ids: Sequence[int], reason: str = "", actor: Any = None) -> AdminResult:
    """Hold the seats back from sale: free seats and expired holds; held, booked and already
    blocked seats are skipped."""

    def apply(rows: list[dict[str, Any]], now: datetime) -> tuple[list[int], dict[int, str]]:
        free = [row for row in rows if row["live_status"] == SeatStatus.AVAILABLE]
        skipped = {
            row["id"]: f"not available: {_describe(row)}" for row in rows if row["live_status"] != SeatStatus.AVAILABLE
        }
        block_rows(free, now, reason=reason, actor=actor)
        return [row["id"] for row in free], skipped

    return _run(seat_ids, apply)


def seats_admin_unblock(*, seat_ids: Sequence[int], actor: Any = None) -> AdminResult:
    """Put the blocked seats among them back on sale; other seats are skipped."""

    def apply(rows: list[dict[str, Any]], now: datetime) -> tuple[list[int], dict[int, str]]:
        blocked = [row for row in rows if row["live_status"] == SeatStatus.BLOCKED]
        skipped = {
            row["id"]: f"not blocked: {_describe(row)}" for row in rows if row["live_status"] != SeatStatus.BLOCKED
        }
        unblock_rows(blocked, actor=actor)
        return [row["id"] for row in blocked], skipped

    return _run(seat_ids, apply)
