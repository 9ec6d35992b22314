"""Reads. They only read: a view that wants expired holds released first calls
:func:`booking.services.holds_release_expired_if_any` before it reads.

Every seat's status comes from ``Seat.objects.with_live_status()`` (an expired
hold reads as available, on the database's clock), so a read is right even
when no sweep has run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db.models import Count, Q
from django.db.models.functions import Now

from .models import Event, Seat, SeatQuerySet, hold_is_live, is_available_now, is_booked
from .representations import SEAT_COLUMNS, iso, seat_payloads


def _seat_rows(queryset: SeatQuerySet) -> list[dict[str, Any]]:
    return seat_payloads(queryset.with_live_status().values_list(*SEAT_COLUMNS))


def seats_list(*, event_id: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
    queryset = Seat.objects.order_by("pk")
    if event_id is not None:
        queryset = queryset.filter(event_id=event_id)
    if status is not None:
        queryset = queryset.live(status)
    return _seat_rows(queryset)


def event_seat_map(*, event_id: int) -> list[dict[str, Any]]:
    """Every seat of the event, in one query."""
    return _seat_rows(Seat.objects.filter(event_id=event_id).order_by("pk"))


def event_seat_snapshot(*, event_id: int) -> tuple[list[dict[str, Any]], datetime] | None:
    """Every seat of the event and the database's time, or None for an unknown event.

    For the live map's first message: one query (a second only for an event
    without seats). It never waits for a write lock.
    """
    seats = Seat.objects.filter(event_id=event_id).order_by("pk").with_live_status()
    rows = list(seats.values_list(*SEAT_COLUMNS, Now()))
    if rows:
        return seat_payloads(row[:-1] for row in rows), rows[0][-1]
    event = Event.objects.filter(pk=event_id).values(db_now=Now()).first()
    return ([], event["db_now"]) if event else None


def event_status_counts(prefix: str = "seats__") -> dict[str, Count]:
    """Seat counts by live status, as annotations of events."""
    return {
        "available": Count("seats", filter=is_available_now(prefix)),
        "locked": Count("seats", filter=hold_is_live(prefix)),
        "booked": Count("seats", filter=is_booked(prefix)),
    }


def _event_payload(row: Mapping[str, Any]) -> dict[str, Any]:
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
        .annotate(**event_status_counts())
        .first()
    )
    return _event_payload(row) if row else None


def event_exists(*, event_id: int) -> bool:
    return Event.objects.filter(pk=event_id).exists()


def holder_seats(*, holder: str) -> list[dict[str, Any]]:
    """The holder's unexpired holds and bookings, across events."""
    queryset = Seat.objects.filter((hold_is_live() & Q(locked_by=holder)) | (is_booked() & Q(booked_by=holder)))
    return _seat_rows(queryset.order_by("event_id", "pk"))
