from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from booking.errors import BookingError
from booking.seating import parse_row_range, validate_seats_per_row
from booking.services import event_create_with_seats
from booking.services.layouts import event_create_with_layout

from .import_seats import read_layout_file

DEFAULT_ROWS, DEFAULT_SEATS_PER_ROW = "A-J", 20


class Command(BaseCommand):
    help = (
        "Create an event with a block of seats (rows x numbers), or with the seats of a layout file "
        "(--layout FILE.csv, see docs/layouts.md); prints the event's id last."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--rows", default=None, help="A range such as A-J, AA-AZ or 1-12, or one row such as A (default A-J)."
        )
        parser.add_argument("--seats-per-row", type=int, default=None, help="Default 20.")
        parser.add_argument("--layout", default=None, help="A layout file (CSV) instead of the rows x numbers block.")
        parser.add_argument("--hold-seconds", type=int, default=None, help="Hold time (default BOOKING_HOLD_SECONDS).")
        parser.add_argument("--starts-at", default=None, help="ISO 8601 date-time (default: a week from now).")

    def handle(self, *args, name, rows, seats_per_row, hold_seconds, starts_at, layout, **options):
        if layout is not None:
            if rows is not None or seats_per_row is not None:
                raise CommandError("Give either --layout or --rows/--seats-per-row, not both.")
            return self._create_with_layout(name, layout, hold_seconds, starts_at)
        rows = DEFAULT_ROWS if rows is None else rows
        seats_per_row = DEFAULT_SEATS_PER_ROW if seats_per_row is None else seats_per_row
        try:
            row_names = parse_row_range(rows)
            validate_seats_per_row(seats_per_row)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if hold_seconds is not None and hold_seconds < 1:
            raise CommandError("--hold-seconds must be at least 1.")
        when = _parse_starts_at(starts_at)
        try:
            event = event_create_with_seats(
                name=name, starts_at=when, rows=row_names, seats_per_row=seats_per_row, hold_seconds=hold_seconds
            )
        except BookingError as exc:
            raise CommandError(exc.detail) from exc
        self.stderr.write(
            f"Created event '{event.name}' with {len(row_names) * seats_per_row} seats "
            f"(rows {row_names[0]}-{row_names[-1]}, 1-{seats_per_row}), hold {event.hold_seconds}s."
        )
        self.stdout.write(str(event.pk))

    def _create_with_layout(self, name: str, layout: str, hold_seconds: int | None, starts_at: str | None) -> None:
        if hold_seconds is not None and hold_seconds < 1:
            raise CommandError("--hold-seconds must be at least 1.")
        when = _parse_starts_at(starts_at)
        seats = read_layout_file(layout)
        try:
            event = event_create_with_layout(name=name, starts_at=when, seats=seats, hold_seconds=hold_seconds)
        except BookingError as exc:
            raise CommandError(exc.detail) from exc
        sections = sorted({seat.section for seat in seats if seat.section})
        self.stderr.write(
            f"Created event '{event.name}' with {len(seats)} seats from {layout}"
            + (f" (sections {', '.join(sections)})" if sections else "")
            + f", hold {event.hold_seconds}s."
        )
        self.stdout.write(str(event.pk))


def _parse_starts_at(text: str | None) -> datetime:
    if text is None:
        return timezone.now() + timedelta(days=7)
    try:
        value = parse_datetime(text)  # None when not of the form; ValueError for a 13th month
        if value is not None:
            if timezone.is_naive(value):
                value = timezone.make_aware(value)
            value.astimezone(UTC)  # the database keeps UTC: the first and the last day may not fit
    except (ValueError, OverflowError) as exc:
        raise CommandError(f"--starts-at '{text}' is not a date-time that can be kept: {exc}.") from exc
    if value is None:
        raise CommandError(f"--starts-at '{text}' is not an ISO 8601 date-time.")
    return value
