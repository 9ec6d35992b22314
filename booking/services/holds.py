"""Holds and bookings of named seats: the API's lock, confirm and unlock.

Each is all or none, through the steps of :mod:`booking.services.pipeline`.
They raise :mod:`booking.errors` and know nothing of HTTP.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import OuterRef, Subquery

from .. import conf
from ..errors import HoldExpired, InvalidRequest, NotLockedByYou, SeatBlocked, SeatBooked, SeatLocked, TooManyHolds
from ..models import Seat, SeatAction, SeatEvent, SeatStatus, WebhookEventType
from ..representations import booking_payload, seat_payloads, seat_values
from .bookings import booking_create, booking_payload_of
from .expiry import log_expiry
from .idempotency import keep_answer
from .pipeline import (
    AVAILABLE,
    AuditRow,
    RuleErrors,
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


@dataclass
class SeatsResult:
    """What a lock, confirm or unlock answers: the holder and the seats as they now are."""

    holder: str
    seats: list[dict[str, Any]]
    lock_expires_at: datetime | None = None
    expires_in_seconds: float | None = None
    booking: dict[str, Any] | None = None


def seats_lock(*, seat_ids: Sequence[int], holder: str, actor: Any = None) -> SeatsResult:
    """Hold every seat for ``holder``, or none: take free seats and expired holds, renew own holds.

    A renewal gives a full ``hold_seconds`` from now, but never past the
    ceiling (BOOKING_MAX_HOLD_SECONDS) counted from when the hold was first taken.
    """
    with write_transaction():
        rows, now = lock_seat_rows(seat_ids, holder=holder)
        result = hold_locked_rows(rows, now, holder=holder, actor=actor)
    return result


def hold_locked_rows(rows: list[dict[str, Any]], now: datetime, *, holder: str, actor: Any) -> SeatsResult:
    """A lock's rules and writes on rows :func:`lock_seat_rows` locked for ``holder`` (inside its
    transaction): the named lock's and best available's one path (hold limit, renewal ceiling,
    audit rows, live push, webhooks, the kept Idempotency-Key answer)."""
    errors = RuleErrors()
    requested_per_event: dict[int, int] = defaultdict(int)
    for row in rows:
        requested_per_event[row["event_id"]] += 1
        if row["live_status"] == SeatStatus.BOOKED:
            errors.add(SeatBooked, row["id"])
        elif row["live_status"] == SeatStatus.BLOCKED:
            errors.add(SeatBlocked, row["id"])
        elif row["live_status"] == SeatStatus.LOCKED and row["locked_by"] != holder:
            errors.add(SeatLocked, row["id"])
    for row in rows:
        if row["held_in_event"] + requested_per_event[row["event_id"]] > conf.max_holds():
            errors.add(TooManyHolds, row["id"])
    errors.raise_first()

    # The new hold per seat, then one UPDATE per distinct (locked_at, expiry): usually one.
    holds: dict[tuple[datetime, datetime], list[dict[str, Any]]] = defaultdict(list)
    audit: list[AuditRow] = []
    taken_over: list[tuple[dict[str, Any], str]] = []  # expired holds this lock records, and their holder
    created: list[dict[str, Any]] = []
    for row in rows:
        hold = timedelta(seconds=row["hold_seconds"])
        if holds_live(row, holder):  # a renewal
            ceiling = row["locked_at"] + timedelta(seconds=conf.max_hold_seconds(row["hold_seconds"]))
            locked_at = row["locked_at"]
            expires = max(row["lock_expires_at"], min(now + hold, ceiling))
            audit += audit_rows([row], SeatAction.EXTENDED, actor=actor, holder=holder)
        else:
            if is_expired_hold(row):  # the old hold's expiry is recorded once, here
                audit += audit_rows([row], SeatAction.EXPIRED, actor=None, holder=row["locked_by"])
                log_expiry(row)
                taken_over.append((row, row["locked_by"]))
            locked_at, expires = now, now + hold
            audit += audit_rows([row], SeatAction.LOCKED, actor=actor, holder=holder)
            created.append(row)
        holds[(locked_at, expires)].append(row)
    for (locked_at, expires), held in holds.items():
        update_seats(
            [row["id"] for row in held],
            **{
                **AVAILABLE,
                "status": SeatStatus.LOCKED.value,
                "locked_by": holder,
                "locked_at": locked_at,
                "lock_expires_at": expires,
            },
        )
        mark_written(held, live_status=SeatStatus.LOCKED, live_expires_at=expires)
    save_audit(audit)
    push_after_commit(rows)
    webhooks_emit_holds(
        WebhookEventType.HOLD_EXPIRED, [r for r, _ in taken_over], holders=[h for _, h in taken_over], at=now
    )
    webhooks_emit_holds(WebhookEventType.HOLD_CREATED, created, holders=[holder] * len(created), at=now)
    first_expiry = min(row["live_expires_at"] for row in rows)
    result = SeatsResult(
        holder=holder,
        seats=seat_payloads(map(seat_values, rows)),
        lock_expires_at=first_expiry,
        expires_in_seconds=round((first_expiry - now).total_seconds(), 3),
    )
    keep_answer(result)
    return result


def _last_hold_expired(holder: str, seat_ids: list[int]) -> set[int]:
    """The seats among ``seat_ids`` whose last audit row for ``holder`` is an expiry."""
    last_action = SeatEvent.objects.filter(seat_id=OuterRef("pk"), holder=holder).order_by("-created_at", "-id")
    return set(
        Seat.objects.filter(pk__in=seat_ids)
        .annotate(last_action=Subquery(last_action.values("action")[:1]))
        .filter(last_action=SeatAction.EXPIRED)
        .values_list("pk", flat=True)
    )


def seats_confirm(
    *, seat_ids: Sequence[int], holder: str, actor: Any = None, order_id: str | None = None
) -> SeatsResult:
    """Book every seat that ``holder`` holds unexpired, or none, as one booking.

    The seats must be of one event. Seats the holder already booked count as
    done: a retried confirm gets the same answer, with the same booking (the
    newest among those seats'); a holder whose hold ran out gets ``hold_expired``.
    """
    with write_transaction():
        rows, now = lock_seat_rows(seat_ids)
        if len({row["event_id"] for row in rows}) > 1:
            raise InvalidRequest("The seats of one confirm must belong to one event: one booking is of one event.")
        errors = RuleErrors()
        to_book: list[dict[str, Any]] = []
        not_held: list[int] = []
        for row in rows:
            if row["live_status"] == SeatStatus.BOOKED:
                if row["booked_by"] != holder:
                    errors.add(SeatBooked, row["id"])
            elif row["live_status"] == SeatStatus.BLOCKED:  # held back since: never booked
                errors.add(SeatBlocked, row["id"])
            elif holds_live(row, holder):
                to_book.append(row)
            elif is_expired_hold(row) and row["locked_by"] == holder:
                errors.add(HoldExpired, row["id"])
            else:
                not_held.append(row["id"])
        if not_held:  # a hold the sweep already released reads as never held, but it was
            expired = _last_hold_expired(holder, not_held)
            for seat_id in not_held:
                errors.add(HoldExpired if seat_id in expired else NotLockedByYou, seat_id)
        errors.raise_first()

        if to_book:
            booking = booking_create(event_id=rows[0]["event_id"], holder=holder, order_id=order_id, created_at=now)
            update_seats(
                [row["id"] for row in to_book],
                **{
                    **AVAILABLE,
                    "status": SeatStatus.BOOKED.value,
                    "booked_by": holder,
                    "booked_at": now,
                    "booking_id": booking.pk,
                },
            )
            mark_written(to_book, live_status=SeatStatus.BOOKED)
            save_audit(audit_rows(to_book, SeatAction.BOOKED, actor=actor, holder=holder, booking_id=booking.pk))
            push_after_commit(to_book)
            answer = booking_payload(
                {
                    "reference": booking.reference,
                    "event_id": booking.event_id,
                    "holder": holder,
                    "order_id": booking.order_id,
                    "created_at": now,
                },
                seat_payloads(map(seat_values, to_book)),
                [],
            )
            webhooks_emit(WebhookEventType.BOOKING_CONFIRMED, answer, at=now)
        else:  # a retry: every seat was booked by this holder already
            answer = booking_payload_of(max(row["booking_id"] for row in rows))
        result = SeatsResult(holder=holder, seats=seat_payloads(map(seat_values, rows)), booking=answer)
        keep_answer(result)
    return result


def seats_unlock(*, seat_ids: Sequence[int], holder: str, actor: Any = None) -> SeatsResult:
    """Release the holder's holds among the seats, all or none; free seats are left as they are."""
    with write_transaction():
        rows, _ = lock_seat_rows(seat_ids)
        errors = RuleErrors()
        to_release: list[dict[str, Any]] = []
        for row in rows:
            if row["live_status"] == SeatStatus.BOOKED:
                errors.add(SeatBooked, row["id"])
            elif row["live_status"] == SeatStatus.LOCKED:
                if row["locked_by"] == holder:
                    to_release.append(row)
                else:
                    errors.add(NotLockedByYou, row["id"])
        errors.raise_first()

        update_seats([row["id"] for row in to_release], **AVAILABLE)
        mark_written(to_release, live_status=SeatStatus.AVAILABLE)
        save_audit(audit_rows(to_release, SeatAction.UNLOCKED, actor=actor, holder=holder))
        push_after_commit(to_release)
        webhooks_emit_holds(
            WebhookEventType.HOLD_RELEASED, to_release, holders=[holder] * len(to_release), at=rows[0]["db_now"]
        )
        result = SeatsResult(holder=holder, seats=seat_payloads(map(seat_values, rows)))
        keep_answer(result)
    return result
