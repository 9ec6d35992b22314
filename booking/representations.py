"""The one JSON shape of a seat, shared by the API, the live push, the snapshot and the admin."""

import operator
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

#: Columns a seat payload is built from: ``Seat.objects.with_live_status().values_list(*SEAT_COLUMNS)``.
#: The status and expiry are the live ones (an expired hold reads as available, with no expiry).
#: Never a holder or a block reason: the public map shows only whether a seat is for sale.
SEAT_COLUMNS = (
    "id",
    "event_id",
    "label",
    "section",
    "row",
    "number",
    "category",
    "accessible",
    "live_status",
    "live_expires_at",
    "version",
)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as DRF renders datetimes."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def seat_payloads(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Seats as clients see them, from rows of :data:`SEAT_COLUMNS` values in that order
    (``values_list(*SEAT_COLUMNS)``; a row read as a dict through :data:`seat_values`).

    ``version`` is the stored row's (bumped by every write): an expired hold
    keeps its hold's version until the write that records its expiry.
    Tuples in one loop: the seat map builds tens of thousands at once, and
    ``values()``'s dicts cost a third of its time (measured on 50 000 seats).
    """
    return [
        {
            "id": seat_id,
            "event": event_id,
            "label": label,
            "section": section,
            "row": row,
            "number": number,
            "category": category,
            "accessible": accessible,
            "status": status,
            "lockExpiresAt": iso(expires) if expires is not None else None,
            "version": version,
        }
        for seat_id, event_id, label, section, row, number, category, accessible, status, expires, version in rows
    ]


#: A seat row read as a dict (``values(...)``) -> its :data:`SEAT_COLUMNS` values, in order.
seat_values = operator.itemgetter(*SEAT_COLUMNS)


#: Columns a booking payload is built from: ``Booking.objects.values(*BOOKING_COLUMNS)``.
BOOKING_COLUMNS = ("id", "reference", "event_id", "holder", "order_id", "created_at")


def booking_payload(
    booking: Mapping[str, Any], seats: list[dict[str, Any]], cancelled_seats: list[dict[str, Any]]
) -> dict[str, Any]:
    """A booking as clients see it: ``confirmed`` while a seat is still booked in it."""
    return {
        "reference": booking["reference"],
        "event": booking["event_id"],
        "holder": booking["holder"],
        "status": "confirmed" if seats else "cancelled",
        "orderId": booking["order_id"] or None,
        "createdAt": iso(booking["created_at"]),
        "seats": seats,
        "cancelledSeats": cancelled_seats,
    }
