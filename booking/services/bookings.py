"""Bookings: made by a confirm (or the box office), cancelled whole or seat by seat.

A cancelled seat is available at once, with an audit row that names the
booking (so the booking keeps its history), a live push, and after commit
whatever else a change reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction

from .. import conf
from ..errors import BookingCancelled, BookingNotFound, CancelWindowClosed, SeatNotInBooking
from ..models import CANCEL_ACTIONS, Booking, SeatAction, SeatEvent, SeatStatus, WebhookEventType
from ..references import new_reference
from ..representations import BOOKING_COLUMNS, iso, seat_payloads, seat_values
from ..selectors import bookings_with_seats
from .idempotency import keep_answer
from .pipeline import (
    AVAILABLE,
    audit_rows,
    error_detail,
    lock_booking_seats,
    mark_written,
    note_booking,
    push_after_commit,
    read_locked_rows,
    save_audit,
    update_seats,
    write_transaction,
)
from .webhooks import webhooks_emit

#: Tries for a reference nobody has: with 40 bits, a second try is already a rarity.
REFERENCE_TRIES = 5


@dataclass
class BookingResult:
    """What a cancel answers: the seats it made available, and the booking as it now is."""

    holder: str
    seats: list[dict[str, Any]]
    booking: dict[str, Any]


def booking_create(*, event_id: int, holder: str, order_id: str | None, created_at: datetime) -> Booking:
    """A new booking with a fresh reference, inside the caller's transaction.

    A reference that exists already (the unique constraint says so) is drawn
    again, in a savepoint, so the caller's transaction goes on.
    """
    for _ in range(REFERENCE_TRIES - 1):
        try:
            with transaction.atomic():
                return _create(event_id, holder, order_id, created_at)
        except IntegrityError:
            continue
    return _create(event_id, holder, order_id, created_at)  # the last try's error is the caller's


def _create(event_id: int, holder: str, order_id: str | None, created_at: datetime) -> Booking:
    booking = Booking.objects.create(
        reference=new_reference(), event_id=event_id, holder=holder, order_id=order_id or "", created_at=created_at
    )
    note_booking(booking.pk, booking.reference, created=True)
    return booking


def booking_payload_of(booking_id: int) -> dict[str, Any]:
    """The booking's payload as this transaction sees it."""
    payload = bookings_with_seats(list(Booking.objects.filter(pk=booking_id).values(*BOOKING_COLUMNS)))[0]
    note_booking(booking_id, payload["reference"])
    return payload


def booking_cancel(
    *, reference: str, holder: str | None, seat_ids: Sequence[int] | None = None, actor: Any = None
) -> BookingResult:
    """Cancel the booking, or the given seats of it; each becomes available at once.

    ``holder``: the caller acts as this holder, and may cancel only its own
    bookings, until BOOKING_CANCEL_CUTOFF_SECONDS before the event starts;
    None: the box office, any booking at any time. Another holder's booking
    is not found. All or none: the first broken rule of booking_not_found,
    seat_not_in_booking, booking_cancelled (nothing left to cancel) and
    cancel_window_closed is raised, and nothing changes.
    """
    with write_transaction():
        bookings = Booking.objects.filter(reference=reference)
        if holder is not None:
            bookings = bookings.filter(holder=holder)
        booking = bookings.values(*BOOKING_COLUMNS).first()
        if booking is None:
            raise BookingNotFound(f"No booking {reference}.")
        current = lock_booking_seats(booking["id"])
        if seat_ids is None:
            to_cancel = current
        else:
            requested = sorted(set(seat_ids))
            cancelled_before = set(
                SeatEvent.objects.filter(booking_id=booking["id"], action__in=CANCEL_ACTIONS).values_list(
                    "seat_id", flat=True
                )
            )
            outside = [i for i in requested if i not in current and i not in cancelled_before]
            if outside:
                raise SeatNotInBooking(error_detail(SeatNotInBooking, outside), seats=outside)
            to_cancel = [i for i in requested if i in current]
        if not to_cancel:
            raise BookingCancelled(f"Nothing is left to cancel in booking {reference}.")
        rows = read_locked_rows(to_cancel)
        now = rows[0]["db_now"]
        if holder is not None:
            closes = rows[0]["event_starts_at"] - timedelta(seconds=conf.cancel_cutoff_seconds())
            if now >= closes:
                raise CancelWindowClosed(
                    f"Booking {reference} could be cancelled until {iso(closes)}; the box office can still cancel it."
                )
        update_seats(to_cancel, **AVAILABLE)
        save_audit(
            audit_rows(rows, SeatAction.CANCELLED, actor=actor, holder=booking["holder"], booking_id=booking["id"])
        )
        mark_written(rows, live_status=SeatStatus.AVAILABLE)
        push_after_commit(rows)
        result = BookingResult(
            holder=booking["holder"],
            seats=seat_payloads(map(seat_values, rows)),
            booking=booking_payload_of(booking["id"]),
        )
        webhooks_emit(WebhookEventType.BOOKING_CANCELLED, result.booking, at=now)
        keep_answer(result)
    return result
