"""Admin forms: seating blocks (rows × numbers) and the holder of an admin booking."""

from django import forms
from django.core.exceptions import ValidationError

from .holders import HOLDER_MAX_LENGTH, validate_holder
from .models import Event
from .seating import MAX_SEATS_PER_ROW, parse_row_range, seat_label

#: The largest block one form may create (a stadium's worth; one request).
MAX_BLOCK_SEATS = 100_000
MAX_FIRST_NUMBER = 100_000


def block_labels(rows: list[str], seats_per_row: int, first_number: int) -> list[str]:
    """The labels :func:`booking.services.seats_add_block` gives a block."""
    return [seat_label(row, number) for row in rows for number in range(first_number, first_number + seats_per_row)]


def _listed(labels: list[str], limit: int = 10) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f" and {len(labels) - limit} more" if len(labels) > limit else "")


class SeatingBlockFields(forms.Form):
    """Rows × seats per row from a first number; ``clean_block`` validates them and puts
    the row names in ``cleaned_data["row_names"]``."""

    block_required = True

    rows = forms.CharField(
        label="Rows", max_length=20, help_text="A range such as A-J, AA-AZ or 1-12, or a single row such as A."
    )
    seats_per_row = forms.IntegerField(label="Seats per row", min_value=1, max_value=MAX_SEATS_PER_ROW, initial=20)
    first_number = forms.IntegerField(
        label="First seat number",
        min_value=1,
        max_value=MAX_FIRST_NUMBER,
        required=False,
        initial=1,
        help_text="Seats are numbered from here in every row (1 unless you extend existing rows).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.block_required:
            self.fields["rows"].required = False
            self.fields["seats_per_row"].required = False

    def clean_rows(self) -> str:
        text = self.cleaned_data.get("rows") or ""
        if text.strip():
            try:
                self.cleaned_data["row_names"] = parse_row_range(text)
            except ValueError as exc:
                raise ValidationError(str(exc)) from exc
        return text

    def clean_block(self, existing_labels=None) -> None:
        cleaned = self.cleaned_data
        rows = cleaned.get("row_names")
        per_row = cleaned.get("seats_per_row")
        first = cleaned.get("first_number") or 1
        cleaned["first_number"] = first
        if self.has_error("rows") or self.has_error("seats_per_row"):
            return
        if not rows:
            if self.block_required:
                self.add_error("rows", "Give the rows of the block.")
            return  # an event without seats (yet)
        if not per_row:
            self.add_error("seats_per_row", "Give the number of seats in each row.")
            return
        total = len(rows) * per_row
        if total > MAX_BLOCK_SEATS:
            raise ValidationError(
                f"That block has {total:,} seats; one block may have at most {MAX_BLOCK_SEATS:,}. Add it in parts."
            )
        labels = block_labels(rows, per_row, first)
        if existing_labels:
            taken = [label for label in labels if label in existing_labels]
            if taken:
                raise ValidationError(
                    f"{len(taken)} of these seats already exist for this event ({_listed(taken)}). Nothing was added."
                )
        cleaned["seat_count"] = total


class SeatingBlockForm(SeatingBlockFields):
    """A block of seats added to an existing event, all or nothing."""

    def __init__(self, *args, event: Event, **kwargs):
        super().__init__(*args, **kwargs)
        self.event = event

    def clean(self):
        cleaned = super().clean()
        existing = set(self.event.seats.values_list("label", flat=True))
        self.clean_block(existing)
        return cleaned


class EventAddForm(SeatingBlockFields, forms.ModelForm):
    """A new event and, optionally, its first seating block, in one transaction."""

    block_required = False

    class Meta:
        model = Event
        fields = ["name", "starts_at", "hold_seconds"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rows"].initial = "A-J"

    def clean(self):
        cleaned = super().clean()
        self.clean_block()
        return cleaned


class HolderForm(forms.Form):
    holder = forms.CharField(
        label="Holder",
        max_length=HOLDER_MAX_LENGTH,
        validators=[validate_holder],
        help_text="Who the seats are booked for: the holder id the API knows (a username or userId).",
        error_messages={"required": "Give the holder's name."},
    )


class BlockReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=200,
        required=False,
        help_text="Why the seats are held back (press, technical, sight line). Staff see it; the public map does not.",
    )

    def clean_reason(self) -> str:
        return self.cleaned_data["reason"].strip()
