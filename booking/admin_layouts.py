"""The admin's layout import (django-import-export: upload, preview, confirm) and seat export.

The import reads the file with :func:`booking.layouts.read_layout`, the rules
``import_seats`` applies, and writes through
:func:`booking.services.layouts.seats_import_layout`, in the preview too: the
preview runs the real write inside import-export's transaction and rolls it
back, so what it shows is what the confirm writes (or the reasons it cannot).
The export streams an event's seats as CSV with their live status (an expired
hold exports as available) and booking reference; it imports again as a layout.
"""

from __future__ import annotations

import csv
import re
import tempfile
import time
import uuid
from pathlib import Path

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect, StreamingHttpResponse
from django.urls import path, reverse
from django.utils.http import urlencode
from django.utils.module_loading import import_string
from import_export import resources
from import_export.admin import ImportMixin
from import_export.formats.base_formats import Format
from import_export.forms import ConfirmImportForm, ImportForm
from import_export.tmp_storages import TempFolderStorage
from tablib import Dataset

from .layouts import COLUMNS, EXPORT_ONLY_COLUMNS, LayoutInvalid, LayoutSeat, escape_cell, read_layout
from .models import Event, Seat, SeatStatus
from .services.layouts import seats_import_layout

#: The preview lists this many seats (a stadium's file is summed up, not drawn).
PREVIEW_ROWS = 500
MESSAGE_PROBLEMS = 20
DATASET_HEADERS = ("line", *COLUMNS)


class LayoutCSV(Format):
    """A layout file as import-export's dataset: every rule checked on reading, defaults filled in."""

    def __init__(self, encoding=None):
        self.encoding = encoding  # import-export passes one; the file is read as bytes (decode_layout)

    def get_title(self):
        return "csv"

    def get_extension(self):
        return "csv"

    def get_content_type(self):
        return "text/csv"

    def can_import(self):
        return True

    def create_dataset(self, in_stream):
        seats = read_layout(in_stream)  # LayoutInvalid: shown on the form, line by line
        return Dataset(*([getattr(seat, name) for name in DATASET_HEADERS] for seat in seats), headers=DATASET_HEADERS)


class LayoutUploadStorage(TempFolderStorage):
    """The uploaded file between preview and confirm: in a private folder, by a name of ours only
    (the confirm form's name comes back from the browser). Several servers: share the folder, or
    set IMPORT_EXPORT_TMP_STORAGE_CLASS (docs/layouts.md)."""

    _NAME = re.compile(r"^[0-9a-f]{32}$")
    name: str | None

    #: A file previewed but never confirmed is deleted after this long (by the next upload).
    KEEP_SECONDS = 24 * 3600

    def save(self, data):
        self.name = self.name or uuid.uuid4().hex
        path = Path(self.get_full_path())
        cutoff = time.time() - self.KEEP_SECONDS
        for old in path.parent.iterdir():
            if self._NAME.match(old.name) and old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
        path.write_bytes(data)

    def get_full_path(self):
        if not self._NAME.match(self.name or ""):
            raise PermissionDenied("Not an uploaded layout.")
        folder = Path(tempfile.gettempdir()) / "booking-layout-uploads"
        folder.mkdir(mode=0o700, exist_ok=True)
        return str(folder / str(self.name))


class SeatLayoutResource(resources.ModelResource):
    """Seats of one event from a layout dataset; the write is the service's, once, after every row."""

    class Meta:
        model = Seat
        fields = COLUMNS
        force_init_instance = True  # every line is a new seat; never an update
        use_bulk = True  # rows are collected, not saved one by one (and no savepoint per row)
        skip_diff = True
        clean_model_instances = False  # read_layout checked every value
        store_instance = True

    def __init__(self, event: Event | None = None, **kwargs):
        super().__init__(**kwargs)
        self.event = event
        self.layout: list[LayoutSeat] = []

    @classmethod
    def get_display_name(cls):
        return "seats (layout)"

    def before_import(self, dataset, **kwargs):
        if self.event is None:
            raise ValueError("Choose the event the seats are for.")
        self.layout = [LayoutSeat(**dict(zip(dataset.headers, row, strict=True))) for row in dataset]

    def import_instance(self, instance, row, **kwargs):
        for name in COLUMNS:
            setattr(instance, name, row[name])
        instance.event = self.event
        instance.layout_line = row["line"]  # for the preview

    def bulk_create(self, using_transactions, dry_run, raise_errors, batch_size=None, result=None):
        self.create_instances.clear()  # the service writes them all in after_import

    def after_import(self, dataset, result, **kwargs):
        # Not ModelResource's: it resets the table's id sequence to max(id), which would hand out
        # ids that concurrent, uncommitted seat inserts already took.
        if result.has_errors() or self.event is None:
            return
        result.layout_event = self.event
        result.layout_seats = seats_import_layout(event=self.event, seats=self.layout)


class EventChoiceMixin(forms.Form):
    event = forms.ModelChoiceField(
        queryset=Event.objects.order_by("-starts_at", "-id"), help_text="The event the seats are added to."
    )


class LayoutImportForm(EventChoiceMixin, ImportForm):
    field_order = ["event", "import_file", "format", "resource"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["import_file"].label = "Layout file (CSV)"
        self.fields["import_file"].help_text = (
            "Columns section,row,number,label,category,accessible,rank (label and rank may be left out); "
            "UTF-8. Nothing is written until you confirm the preview."
        )


class LayoutConfirmForm(ConfirmImportForm):
    event = forms.ModelChoiceField(queryset=Event.objects.all(), widget=forms.HiddenInput())


class SeatLayoutImportMixin(ImportMixin):
    """The seat list's "Import": a layout file into a chosen event, previewed before it commits."""

    resource_classes = [SeatLayoutResource]
    import_form_class = LayoutImportForm
    confirm_form_class = LayoutConfirmForm
    import_template_name = "admin/booking/seat/import.html"
    skip_admin_log = True  # one history line on the event instead of one per seat

    def get_import_formats(self):
        return [LayoutCSV]

    def get_tmp_storage_class(self):
        configured = getattr(settings, "IMPORT_EXPORT_TMP_STORAGE_CLASS", None)
        return import_string(configured) if isinstance(configured, str) else configured or LayoutUploadStorage

    def has_import_permission(self, request):
        return request.user.has_perm("booking.add_seat")

    def get_import_form_initial(self, request):
        event = request.GET.get("event", "")
        return {"event": event} if event.isdigit() else {}

    def get_confirm_form_initial(self, request, import_form):
        initial = super().get_confirm_form_initial(request, import_form)
        if import_form is not None:
            initial["event"] = import_form.cleaned_data["event"].pk
        return initial

    def get_import_resource_kwargs(self, request, **kwargs):
        form = kwargs.get("form")
        cleaned = getattr(form, "cleaned_data", None) or {}
        return {"event": cleaned.get("event")}

    def get_import_data_kwargs(self, **kwargs):
        kwargs = super().get_import_data_kwargs(**kwargs)
        kwargs.pop("request", None)
        return kwargs

    def add_data_read_fail_error_to_form(self, form, e):
        if isinstance(e, LayoutInvalid):
            form.add_error("import_file", [e.detail, *(str(p) for p in e.problems)])
        else:
            super().add_data_read_fail_error_to_form(form, e)

    def get_import_context_data(self, **kwargs):
        return {**super().get_import_context_data(**kwargs), "preview_rows": PREVIEW_ROWS}

    def process_result(self, result, request):
        event = getattr(result, "layout_event", None)
        if result.has_errors() or event is None:  # e.g. a seat added to the event since the preview
            for error in result.base_errors:
                problems = getattr(error.error, "problems", [])
                text = getattr(error.error, "detail", str(error.error))
                # A message is a cookie's worth: the first problems, then how many more (the preview lists all).
                shown = "; ".join(str(p) for p in problems[:MESSAGE_PROBLEMS])
                more = f"; and {len(problems) - MESSAGE_PROBLEMS} more" if len(problems) > MESSAGE_PROBLEMS else ""
                messages.error(request, f"{text} {shown}{more}".strip())
            again = reverse("admin:booking_seat_import")
            return HttpResponseRedirect(again + (f"?{urlencode({'event': event.pk})}" if event else ""))
        count = len(result.layout_seats)
        self.log_change(request, event, f"Imported {count} seats from a layout file.")
        messages.success(request, f"{count} seats imported into {event.name}.")
        seats = reverse("admin:booking_seat_changelist") + "?" + urlencode({"event__id__exact": event.pk})
        return HttpResponseRedirect(seats)


# --- Export --------------------------------------------------------------------------


EXPORT_HEADER = (*COLUMNS, *EXPORT_ONLY_COLUMNS)


class _Echo:
    """csv.writer writes into it; the streaming response sends each line as it comes."""

    def write(self, value: str) -> str:
        return value


def export_rows(event: Event):
    """The CSV lines of an event's seats, in id order, with live status, holder and booking."""
    writer = csv.writer(_Echo(), lineterminator="\n")
    yield "\ufeff" + writer.writerow(EXPORT_HEADER)  # a BOM: spreadsheets then read UTF-8
    seats = Seat.objects.filter(event=event).order_by("id").with_live_status()
    columns = (*COLUMNS, "live_status", "block_reason", "locked_by", "booked_by", "booking__reference")
    for row in seats.values_list(*columns).iterator(chunk_size=2000):
        value = dict(zip(columns, row, strict=True))
        status = value["live_status"]
        holder = {SeatStatus.LOCKED: value["locked_by"], SeatStatus.BOOKED: value["booked_by"]}.get(status, "")
        cells = [
            *(value[name] for name in COLUMNS[:5]),
            "yes" if value["accessible"] else "no",
            value["rank"],
            status,
            value["block_reason"],
            holder,
            value["booking__reference"] or "",
        ]
        yield writer.writerow([escape_cell(cell) for cell in cells])


class EventSeatsExportMixin:
    """An event's "Export seats (CSV)" link: the whole event, streamed."""

    def get_urls(self):
        return [
            path(
                "<path:object_id>/seats.csv",
                self.admin_site.admin_view(self.export_seats_view),  # type: ignore[attr-defined]
                name="booking_event_export_seats",
            ),
            *super().get_urls(),  # type: ignore[misc]
        ]

    def export_seats_view(self, request, object_id: str):
        event = self.get_object(request, object_id)  # type: ignore[attr-defined]
        seat_admin = self.admin_site._registry[Seat]  # type: ignore[attr-defined]
        if event is None or not seat_admin.has_view_permission(request):
            raise PermissionDenied
        response = StreamingHttpResponse(export_rows(event), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="event-{event.pk}-seats.csv"'
        return response
