"""The one JSON shape of a seat, shared by the API, the live push, the snapshot and the admin."""

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

#: Columns a seat payload is built from: ``Seat.objects.with_live_status().values(*SEAT_COLUMNS)``.
#: The status and expiry are the live ones (an expired hold reads as available, with no expiry).
SEAT_COLUMNS = ("id", "event_id", "label", "row", "number", "live_status", "live_expires_at", "version")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as DRF renders datetimes."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def seat_payloads(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Seats as clients see them, from rows with :data:`SEAT_COLUMNS`.

    ``version`` is the stored row's (bumped by every write): an expired hold
    keeps its hold's version until the write that records its expiry.
    One loop for many rows: the seat map builds tens of thousands at once.
    """
    return [
        {
            "id": row["id"],
            "event": row["event_id"],
            "label": row["label"],
            "row": row["row"],
            "number": row["number"],
            "status": row["live_status"],
            "lockExpiresAt": iso(row["live_expires_at"]),
            "version": row["version"],
        }
        for row in rows
    ]
