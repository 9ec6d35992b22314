"""The one JSON shape of a seat, shared by the API, the live push and the admin."""

from datetime import datetime
from typing import Any

from .models import SeatStatus

#: Columns a seat payload is built from (``.values(*SEAT_COLUMNS)``).
SEAT_COLUMNS = ("id", "event_id", "label", "row", "number", "status", "lock_expires_at", "version")


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, as DRF renders datetimes."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def seat_payload(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A seat as clients see it at ``now`` (the database clock): an expired hold reads as available.

    ``version`` is the stored row's (bumped by every write): an expired hold
    keeps its hold's version until the sweep's write makes it one higher.
    """
    status = row["status"]
    expires = row["lock_expires_at"]
    if status == SeatStatus.LOCKED and (expires is None or expires <= now):
        status, expires = SeatStatus.AVAILABLE, None
    elif status != SeatStatus.LOCKED:
        expires = None
    return {
        "id": row["id"],
        "event": row["event_id"],
        "label": row["label"],
        "row": row["row"],
        "number": row["number"],
        "status": str(status),
        "lockExpiresAt": iso(expires),
        "version": row["version"],
    }
