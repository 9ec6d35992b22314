"""Seats from a layout file (booking/layouts.py): written all or nothing.

Like a seating block (services/events.py) the new seats have no audit row: they
have no state to explain yet.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from django.db import IntegrityError, transaction

from ..errors import InvalidRequest
from ..layouts import LayoutInvalid, LayoutSeat, layout_conflicts
from ..models import Event, Seat
from .pipeline import note_seat_map_changes

BATCH_SIZE = 2000


def seats_import_layout(*, event: Event, seats: Sequence[LayoutSeat]) -> list[Seat]:
    """Add a layout's seats to an event, all or nothing; a seat or label the event has is a
    LayoutInvalid naming the file's lines."""
    with transaction.atomic():
        # Imports into one event take turns, so two cannot both add the same place. NO KEY
        # UPDATE: inserting seats (a key share on the event) and bookings never wait on it.
        Event.objects.select_for_update(no_key=True).filter(pk=event.pk).values_list("pk").get()
        existing = Seat.objects.filter(event=event).values_list("section", "row", "number", "label")
        problems = layout_conflicts(seats, existing.iterator(chunk_size=BATCH_SIZE))
        if problems:
            raise LayoutInvalid(problems)
        try:
            with transaction.atomic():
                created = Seat.objects.bulk_create((seat.as_seat(event=event) for seat in seats), batch_size=BATCH_SIZE)
                note_seat_map_changes([(event.pk, 0)])  # the seat map's ETag changes with its new seats
                return created
        except IntegrityError as exc:  # the unique label, should another writer get past the lock
            raise InvalidRequest("Some of these seats already exist for this event.") from exc


def event_create_with_layout(
    *, name: str, starts_at: datetime, seats: Sequence[LayoutSeat], hold_seconds: int | None = None
) -> Event:
    """Create an event with a layout's seats, all or nothing."""
    with transaction.atomic():
        event = Event.objects.create(
            name=name, starts_at=starts_at, **({"hold_seconds": hold_seconds} if hold_seconds else {})
        )
        seats_import_layout(event=event, seats=seats)
    return event
