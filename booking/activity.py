"""What the sale did, once it committed: one log line per kind of change, and the counters.

Every seat change's audit rows come here (booking/services/pipeline.py's
``save_audit``, and the sweep's rows), and after the transaction commits each
group of seats that one holder's action changed in one event becomes one line
of ``key=value`` fields on the ``booking.activity`` logger, for example::

    seats action=booked event=3 holder='alice' booking=7KQ2M9XA count=2 seats=12,13

A holder (any printable text) is written as its ``repr``: quotes, spaces and an
``=`` inside it cannot be read as another field. Nothing is logged or counted for
a change that rolled back.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from django.db import transaction

from . import metrics

logger = logging.getLogger("booking.activity")

#: Seat ids written out on one line; a sweep's batch of thousands names its first ones and its count.
MAX_SEATS_PER_LINE = 100

#: The seat counter each audit action adds to.
_SEAT_COUNTERS = {
    "locked": metrics.HOLDS_CREATED,
    "expired": metrics.HOLDS_EXPIRED,
    "booked": metrics.SEATS_BOOKED,
    "admin_booked": metrics.SEATS_BOOKED,
    "unlocked": metrics.SEATS_RELEASED,
    "admin_released": metrics.SEATS_RELEASED,
    "cancelled": metrics.SEATS_CANCELLED,
    "admin_cancelled": metrics.SEATS_CANCELLED,
}


class Change(NamedTuple):
    """One seat's change, as its audit row has it."""

    action: str
    event_id: int
    seat_id: int
    holder: str
    booking_id: int | None


def changes_after_commit(
    changes: Iterable[Change], *, references: Mapping[int, str], new_bookings: set[int] | None = None
) -> None:
    """Log and count ``changes`` once the transaction commits. ``references`` (booking id ->
    reference) and ``new_bookings`` may still be filled until then: they are read at commit."""
    changes = list(changes)
    if changes:
        transaction.on_commit(lambda: _emit(changes, references, new_bookings or set()))


def line(action: str, event_id: int, holder: str, booking: str | None, seat_ids: list[int]) -> str:
    """One group's line (the format is written here only)."""
    shown = ",".join(str(seat_id) for seat_id in seat_ids[:MAX_SEATS_PER_LINE])
    more = ",..." if len(seat_ids) > MAX_SEATS_PER_LINE else ""
    booking_field = f" booking={booking}" if booking else ""
    return (
        f"seats action={action} event={event_id} holder={holder!r}{booking_field} "
        f"count={len(seat_ids)} seats={shown}{more}"
    )


def _emit(changes: list[Change], references: Mapping[int, str], new_bookings: set[int]) -> None:
    groups: dict[tuple[str, int, str, int | None], list[int]] = defaultdict(list)
    for change in changes:
        groups[(change.action, change.event_id, change.holder, change.booking_id)].append(change.seat_id)
        counter = _SEAT_COUNTERS.get(change.action)
        if counter is not None:
            counter.inc()
    if new_bookings:
        metrics.BOOKINGS_CONFIRMED.inc(len(new_bookings))
    if not logger.isEnabledFor(logging.INFO):
        return
    for (action, event_id, holder, booking_id), seat_ids in groups.items():
        booking = references.get(booking_id, f"#{booking_id}") if booking_id is not None else None
        logger.info(line(action, event_id, holder, booking, sorted(seat_ids)))
