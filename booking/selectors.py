"""Reads. An expired hold always reads as available.

Each read of seats first releases the expired holds among the seats it
returns (:func:`booking.services.holds_release_expired_if_any`), so the
database converges even when no sweep runs; and it presents expired holds
as available anyway, in case that release was skipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import Now

from .models import Event, Seat, SeatStatus
from .representations import SEAT_COLUMNS, iso, seat_payload
from .services import holds_release_expired_if_any

AVAILABLE_NOW = Q(status=SeatStatus.AVAILABLE) | Q(status=SeatStatus.LOCKED, lock_expires_at__lte=Now())
LOCKED_NOW = Q(status=SeatStatus.LOCKED, lock_expires_at__gt=Now())
BOOKED = Q(status=SeatStatus.BOOKED)
STATUS_FILTERS = {SeatStatus.AVAILABLE: AVAILABLE_NOW, SeatStatus.LOCKED: LOCKED_NOW, SeatStatus.BOOKED: BOOKED}


def _payloads(queryset) -> list[dict[str, Any]]:
    rows = list(queryset.values(*SEAT_COLUMNS, db_now=Now()))
    return [seat_payload(row, row["db_now"]) for row in rows]


def seats_list(*, event_id: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
    holds_release_expired_if_any(event_id=event_id)
    queryset = Seat.objects.order_by("pk")
    if event_id is not None:
        queryset = queryset.filter(event_id=event_id)
    if status is not None:
        queryset = queryset.filter(STATUS_FILTERS[status])
    return _payloads(queryset)


def event_seat_map(*, event_id: int) -> list[dict[str, Any]]:
    """Every seat of the event, in one query."""
    return seats_list(event_id=event_id)


def event_seat_snapshot(*, event_id: int) -> tuple[list[dict[str, Any]], datetime] | None:
    """Every seat of the event and the database's time, or None for an unknown event.

    For the live map's first message: one query (a second only for an event
    without seats). It releases nothing, so it never waits for a write lock;
    expired holds read as available all the same.
    """
    rows = list(Seat.objects.filter(event_id=event_id).order_by("pk").values(*SEAT_COLUMNS, db_now=Now()))
    if rows:
        now = rows[0]["db_now"]
        return [seat_payload(row, now) for row in rows], now
    event = Event.objects.filter(pk=event_id).values(db_now=Now()).first()
    return ([], event["db_now"]) if event else None


def _status_counts() -> dict[str, Count]:
    return {
        "available": Count(
            "seats",
            filter=Q(seats__status=SeatStatus.AVAILABLE)
            | Q(seats__status=SeatStatus.LOCKED, seats__lock_expires_at__lte=Now()),
        ),
        "locked": Count("seats", filter=Q(seats__status=SeatStatus.LOCKED, seats__lock_expires_at__gt=Now())),
        "booked": Count("seats", filter=Q(seats__status=SeatStatus.BOOKED)),
    }


def _event_payload(row: dict[str, Any]) -> dict[str, Any]:
    payload = {
        "id": row["id"],
        "name": row["name"],
        "startsAt": iso(row["starts_at"]),
        "holdSeconds": row["hold_seconds"],
    }
    if "available" in row:
        counts = {key: row[key] for key in ("available", "locked", "booked")}
        payload["seatCount"] = sum(counts.values())
        payload["counts"] = counts
    return payload


def event_list() -> list[dict[str, Any]]:
    rows = Event.objects.order_by("starts_at", "id").values("id", "name", "starts_at", "hold_seconds")
    return [_event_payload(row) for row in rows]


def event_detail(*, event_id: int) -> dict[str, Any] | None:
    """The event with its seat counts by status, or None."""
    row = (
        Event.objects.filter(pk=event_id)
        .values("id", "name", "starts_at", "hold_seconds")
        .annotate(**_status_counts())
        .first()
    )
    return _event_payload(row) if row else None


def holder_seats(*, holder: str) -> list[dict[str, Any]]:
    """The holder's unexpired holds and bookings, across events."""
    queryset = Seat.objects.filter(
        Q(status=SeatStatus.LOCKED, locked_by=holder, lock_expires_at__gt=Now())
        | Q(status=SeatStatus.BOOKED, booked_by=holder)
    ).order_by("event_id", "pk")
    return _payloads(queryset)
