"""Events and their seats: created in blocks (rows × numbers), all or nothing.

These run inside a caller's transaction too (the admin's add form saves the
event and its block in one), so they are not durable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from ..errors import InvalidRequest
from ..models import Event, Seat
from ..seating import seat_label, seat_rank
from .pipeline import note_seat_map_changes


def event_create_with_seats(
    *, name: str, starts_at: datetime, rows: Sequence[str], seats_per_row: int, hold_seconds: int | None = None
) -> Event:
    """Create an event and its block of seats (``rows`` × 1..``seats_per_row``), all or nothing."""
    event = Event(name=name, starts_at=starts_at, **({"hold_seconds": hold_seconds} if hold_seconds else {}))
    try:
        # The model's own rules (the admin's form applies them too): a name too long was a
        # database error on PostgreSQL and kept whole on SQLite.
        event.full_clean()
    except ValidationError as exc:
        raise InvalidRequest(_describe(exc)) from exc
    with transaction.atomic():
        event.save()
        seats_add_block(event=event, rows=rows, seats_per_row=seats_per_row)
    return event


def _describe(error: ValidationError) -> str:
    """``name: Ensure this value has at most 200 characters (it has 300).`` and so on."""
    if not hasattr(error, "error_dict"):
        return " ".join(error.messages)
    return " ".join(
        message if field == "__all__" else f"{field.replace('_', ' ')}: {message}"
        for field, messages in error.message_dict.items()
        for message in messages
    )


def seat_maps_changed(*, event_ids: Iterable[int]) -> None:
    """Seats of these events were added or deleted outside the seat writes (the admin's forms):
    their seat maps' ETags change with this transaction."""
    with transaction.atomic():
        note_seat_map_changes([(event_id, 0) for event_id in set(event_ids)])


def seats_add_block(*, event: Event, rows: Sequence[str], seats_per_row: int, first_number: int = 1) -> int:
    """Add a block of seats to an event, all or nothing; a label that exists already is an error."""
    last_number = first_number + seats_per_row - 1
    labels = [
        (position, row, number) for position, row in enumerate(rows) for number in range(first_number, last_number + 1)
    ]
    try:
        with transaction.atomic():
            Seat.objects.bulk_create(
                (
                    Seat(
                        event=event,
                        label=seat_label(row, number),
                        row=row,
                        number=number,
                        # The block's rows front to back in the order given, the middle of its numbers best.
                        rank=seat_rank(position, number, first_number, last_number),
                    )
                    for position, row, number in labels
                ),
                batch_size=2000,
            )
            note_seat_map_changes([(event.pk, 0)])
    except IntegrityError as exc:
        raise InvalidRequest("Some of these seats already exist for this event.") from exc
    return len(labels)
