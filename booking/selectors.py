"""Reads. They only read: a view that wants expired holds released first calls
:func:`booking.services.holds_release_expired_if_any` before it reads.

Every seat's status comes from ``Seat.objects.with_live_status()`` (an expired
hold reads as available, on the database's clock), so a read is right even
when no sweep has run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, Now

from .models import (
    CANCEL_ACTIONS,
    Booking,
    Event,
    Seat,
    SeatEvent,
    SeatMapVersion,
    SeatQuerySet,
    WebhookDelivery,
    hold_is_live,
    is_available_now,
    is_blocked,
    is_booked,
)
from .representations import BOOKING_COLUMNS, SEAT_COLUMNS, booking_payload, iso, seat_payloads


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


def _per_event(queryset: QuerySet, aggregate: Any) -> Subquery:
    """``aggregate`` over the event's rows of ``queryset``, as a subquery of an event row."""
    rows = queryset.filter(event_id=OuterRef("pk")).order_by().values("event_id")
    return Subquery(rows.annotate(value=aggregate).values("value")[:1])


# Built once per process and cloned per request: resolving the subqueries' annotations
# costs more than compiling them (as for booking/services/pipeline.py's row locks).
_SEAT_MAP_STATE = (
    Event.objects.order_by()
    .values_list("created_at")
    .annotate(
        version=Coalesce(_per_event(SeatMapVersion.objects.all(), Sum("version")), 0),
        expired=Coalesce(_per_event(Seat.objects.expired_holds(), Count("pk")), 0),
    )
)


def event_seat_map_state(*, event_id: int) -> tuple[int, int, datetime] | None:
    """What the seat map's ETag is made of, in one indexed query, or None for an unknown event:
    the seat map's change counter (the sum of its shards), how many holds have run out on the
    database's clock that no write has recorded yet (each turns a seat available to readers
    without a write), and when the event was created (so a database made anew never reuses
    an old tag)."""
    row = _SEAT_MAP_STATE.filter(pk=event_id).first()
    if row is None:
        return None
    created_at, version, expired = row
    return version, expired, created_at


def backlog_counts(*, timeout_ms: int) -> tuple[int, int]:
    """For a metrics scrape: the expired holds not released yet, and the webhook deliveries
    due now; each statement bounded by ``timeout_ms`` on PostgreSQL."""
    from .services.sql import set_statement_timeout

    with transaction.atomic():
        set_statement_timeout(timeout_ms)
        expired = Seat.objects.expired_holds().count()
        due = WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING, next_attempt_at__lte=Now()).count()
    return expired, due


def event_status_counts(prefix: str = "seats__") -> dict[str, Count]:
    """Seat counts by live status, as annotations of events."""
    return {
        "available": Count("seats", filter=is_available_now(prefix)),
        "locked": Count("seats", filter=hold_is_live(prefix)),
        "booked": Count("seats", filter=is_booked(prefix)),
        "blocked": Count("seats", filter=is_blocked(prefix)),
    }


def _event_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    payload = {
        "id": row["id"],
        "name": row["name"],
        "startsAt": iso(row["starts_at"]),
        "holdSeconds": row["hold_seconds"],
    }
    if "available" in row:
        counts = {key: row[key] for key in ("available", "locked", "booked", "blocked")}
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


# --- Bookings -------------------------------------------------------------------


def bookings_with_seats(bookings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Booking payloads for rows of ``BOOKING_COLUMNS``: their seats now, and those cancelled
    from them, live; two queries for any number of bookings."""
    ids = [booking["id"] for booking in bookings]
    seats: dict[int, list[tuple]] = defaultdict(list)
    for row in (
        Seat.objects.filter(booking_id__in=ids)
        .order_by("pk")
        .with_live_status()
        .values_list(*SEAT_COLUMNS, "booking_id")
    ):
        seats[row[-1]].append(row[:-1])
    cancelled_ids: dict[int, set[int]] = defaultdict(set)
    for booking_id, seat_id in SeatEvent.objects.filter(booking_id__in=ids, action__in=CANCEL_ACTIONS).values_list(
        "booking_id", "seat_id"
    ):
        cancelled_ids[booking_id].add(seat_id)
    cancelled_rows = {
        row[0]: row
        for row in Seat.objects.filter(pk__in=set().union(*cancelled_ids.values()))
        .with_live_status()
        .values_list(*SEAT_COLUMNS)
    }
    payloads = []
    for booking in bookings:
        # A seat cancelled and booked into this booking again (by the box office) is in it now.
        current = {row[0] for row in seats[booking["id"]]}
        gone = sorted(seat_id for seat_id in cancelled_ids[booking["id"]] if seat_id not in current)
        payloads.append(
            booking_payload(
                booking, seat_payloads(seats[booking["id"]]), seat_payloads(cancelled_rows[i] for i in gone)
            )
        )
    return payloads


def booking_detail(*, reference: str, holder: str | None = None) -> dict[str, Any] | None:
    """The booking with this (stored-form) reference; with ``holder``, only if it is theirs."""
    bookings = Booking.objects.filter(reference=reference)
    if holder is not None:
        bookings = bookings.filter(holder=holder)
    rows = list(bookings.values(*BOOKING_COLUMNS))
    return bookings_with_seats(rows)[0] if rows else None


def holder_bookings(*, holder: str) -> QuerySet[Booking]:
    """The holder's bookings, newest first (a queryset, for the API's cursor pagination)."""
    return Booking.objects.filter(holder=holder).order_by("-created_at", "-id")
