from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from booking.errors import BookingError
from booking.layouts import LayoutInvalid, read_layout
from booking.models import Event
from booking.services.layouts import seats_import_layout


def read_layout_file(path: str):
    """The seats of a layout file, or a CommandError listing every problem, one a line."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}.") from exc
    try:
        return read_layout(data)
    except LayoutInvalid as exc:
        raise CommandError(layout_problems_text(path, exc)) from exc


def layout_problems_text(path: str, exc: LayoutInvalid) -> str:
    return "\n".join([f"{path}: {exc.detail}", *(f"{path}: {problem}" for problem in exc.problems)])


class Command(BaseCommand):
    help = (
        "Add seats to an event from a layout file (CSV: section,row,number,label,category,accessible,rank; "
        "label and rank optional), all or nothing; every bad line is reported. See docs/layouts.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("event_id", type=int)
        parser.add_argument("file")

    def handle(self, *args, event_id, file, **options):
        event = Event.objects.filter(pk=event_id).first()
        if event is None:
            raise CommandError(f"No event {event_id}.")
        seats = read_layout_file(file)
        try:
            created = seats_import_layout(event=event, seats=seats)
        except LayoutInvalid as exc:
            raise CommandError(layout_problems_text(file, exc)) from exc
        except BookingError as exc:
            raise CommandError(exc.detail) from exc
        sections = sorted({seat.section for seat in seats})
        self.stdout.write(
            f"Added {len(created)} seats to event {event.pk} '{event.name}'"
            + (f" in sections {', '.join(s or '(none)' for s in sections)}." if any(sections) else ".")
        )
