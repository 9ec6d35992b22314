"""The box office's admin.

Events with their seat counts and seating blocks; seats with their live state
and the actions that change it; bookings, found by reference, read-only but
for their cancel action; the audit trail, read-only; users and their API
tokens; webhook endpoints (made by the service, their secret shown once),
their deliveries (read-only, resent through the service) and messages. Every
change of a seat's state goes through :mod:`booking.services` (row locks,
rules on the database clock, audit rows, live push): the forms here never
write a status field, and never make or edit a booking.
"""

from __future__ import annotations

import inspect
import json
from collections import defaultdict
from datetime import datetime, timedelta
from typing import cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Case, Count, Exists, OuterRef, Q, Value, When
from django.db.models.functions import Now
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from rest_framework.authtoken.models import Token

from . import services
from .admin_layouts import EventSeatsExportMixin, SeatLayoutImportMixin
from .errors import BookingCancelled, BookingError
from .forms import BlockReasonForm, EventAddForm, HolderForm, SeatingBlockForm
from .models import (
    LIVE_STATUS_FILTERS,
    Booking,
    Event,
    Seat,
    SeatEvent,
    SeatQuerySet,
    SeatStatus,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
    WebhookMessage,
    hold_is_live,
    is_available_now,
    is_blocked,
    is_booked,
)
from .permissions import HOLD_FOR_OTHERS
from .references import normalize_reference
from .representations import BOOKING_COLUMNS
from .selectors import bookings_with_seats, event_status_counts
from .services import webhooks

admin.site.site_header = "Box office"
admin.site.site_title = "Box office"
admin.site.index_title = "Events, seats, bookings, holders, the audit trail and webhooks"
# The index adds a "find a booking" box: a customer reads out a reference, one search finds it.
admin.site.index_template = "admin/booking/index.html"

BADGES = {
    # live status: (text, background)
    "available": ("available", "#2e7d32"),
    "locked": ("held", "#e65100"),
    "booked": ("booked", "#1565c0"),
    "blocked": ("blocked", "#424242"),
}


def _hold_expired(seat: Seat) -> bool:
    """A stored hold that reads as available (its expiry not yet recorded by the sweep)."""
    return seat.status == SeatStatus.LOCKED and getattr(seat, "live_status", None) == SeatStatus.AVAILABLE


def _badge(text: str, colour: str, title: str = ""):
    return format_html(
        '<span title="{}" style="display:inline-block;min-width:5.5em;text-align:center;padding:1px 8px;'
        'border-radius:9px;color:#fff;background:{};font-weight:600">{}</span>',
        title,
        colour,
        text,
    )


def _time_left(expires: datetime | None, now: datetime | None) -> str:
    if expires is None or now is None:
        return "—"
    seconds = int((expires - now) / timedelta(seconds=1))
    if seconds <= 0:
        return "expired"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _plural(count: int, word: str, plural: str = "") -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _admin_url(obj, view: str = "change") -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=[quote(obj.pk)])


def _booking_link(booking_id: int | None, reference: str | None):
    """A booking's reference, linking to its admin page; "—" for none."""
    if booking_id is None:
        return "—"
    url = reverse("admin:booking_booking_change", args=[quote(booking_id)])
    return format_html('<a href="{}"><code>{}</code></a>', url, reference)


def _seat_links(seats: list[dict]) -> str:
    """Seat payloads as their labels, each linking to its seat's admin page."""
    if not seats:
        return "—"
    return format_html_join(
        ", ", '<a href="{}">{}</a>', ((reverse("admin:booking_seat_change", args=[s["id"]]), s["label"]) for s in seats)
    )


def _changelist(model_name: str, **params) -> str:
    return reverse(f"admin:booking_{model_name}_changelist") + ("?" + urlencode(params) if params else "")


# --- Events ------------------------------------------------------------------


def _event_counts() -> dict[str, Count]:
    return {"seat_n": Count("seats"), **{f"{status}_n": n for status, n in event_status_counts().items()}}


@admin.register(Event)
class EventAdmin(EventSeatsExportMixin, admin.ModelAdmin):
    list_display = ("name", "starts_at", "hold_for", "seat_total", "available", "held", "booked", "links")
    list_display_links = ("name",)
    search_fields = ("name",)
    ordering = ("starts_at", "id")
    list_per_page = 50
    add_form = EventAddForm
    add_fieldsets = (
        (None, {"fields": ("name", "starts_at", "hold_seconds")}),
        (
            "Seating block",
            {
                "fields": ("rows", "seats_per_row", "first_number"),
                "description": "The event's seats: every row of the range gets seats numbered from the first "
                "number (A-J × 20 gives A1 … J20). Leave the rows empty to add seats later.",
            },
        ),
    )
    fieldsets = (
        (None, {"fields": ("name", "starts_at", "hold_seconds")}),
        ("Seats now", {"fields": ("seat_summary",)}),
    )
    readonly_fields = ("seat_summary",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**_event_counts())

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request, obj, form, change):
        # The admin's change view runs in one transaction: event and block, or neither.
        super().save_model(request, obj, form, change)
        if not change and form.cleaned_data.get("row_names"):
            count = services.seats_add_block(
                event=obj,
                rows=form.cleaned_data["row_names"],
                seats_per_row=form.cleaned_data["seats_per_row"],
                first_number=form.cleaned_data["first_number"],
            )
            self.message_user(request, f"{_plural(count, 'seat')} created for {obj.name}.", messages.SUCCESS)

    @admin.display(description="Hold", ordering="hold_seconds")
    def hold_for(self, obj):
        return f"{obj.hold_seconds} s"

    @admin.display(description="Seats", ordering="seat_n")
    def seat_total(self, obj):
        return obj.seat_n

    @admin.display(description="Available", ordering="available_n")
    def available(self, obj):
        return obj.available_n

    @admin.display(description="Held", ordering="locked_n")
    def held(self, obj):
        return obj.locked_n

    @admin.display(description="Booked", ordering="booked_n")
    def booked(self, obj):
        return obj.booked_n

    @admin.display(description="")
    def links(self, obj):
        seats = _changelist("seat", event__id__exact=obj.pk)
        bookings = _changelist("booking", event__id__exact=obj.pk)
        block = reverse("admin:booking_event_seating_block", args=[obj.pk])
        layout = reverse("admin:booking_seat_import") + "?" + urlencode({"event": obj.pk})
        export = reverse("admin:booking_event_export_seats", args=[obj.pk])
        return format_html(
            '<a href="{}">Seats</a> · <a href="{}">Bookings</a> · <a href="{}">Add seating block</a> · '
            '<a href="{}">Import layout</a> · <a href="{}">Export seats (CSV)</a>',
            seats,
            bookings,
            block,
            layout,
            export,
        )

    @admin.display(description="Seats")
    def seat_summary(self, obj):
        if obj.pk is None:
            return "—"
        seats = reverse("admin:booking_seat_changelist") + "?" + urlencode({"event__id__exact": obj.pk})
        return format_html(
            '{} seats: {} available, {} held, {} booked. <a href="{}">Show the seats</a>',
            obj.seat_n,
            obj.available_n,
            obj.locked_n,
            obj.booked_n,
            seats,
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/seating-block/",
                self.admin_site.admin_view(self.seating_block_view),
                name="booking_event_seating_block",
            ),
            *super().get_urls(),
        ]

    def seating_block_view(self, request: HttpRequest, object_id: str):
        """Add a block of seats (rows × numbers) to an event, all or nothing."""
        event = self.get_object(request, object_id)
        if event is None:
            return self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]  # Django's own
                request, self.opts, object_id
            )
        if not (self.has_change_permission(request, event) and request.user.has_perm("booking.add_seat")):
            raise PermissionDenied
        form = SeatingBlockForm(request.POST or None, event=event)
        if request.method == "POST" and form.is_valid():
            try:
                count = services.seats_add_block(
                    event=event,
                    rows=form.cleaned_data["row_names"],
                    seats_per_row=form.cleaned_data["seats_per_row"],
                    first_number=form.cleaned_data["first_number"],
                )
            except BookingError as exc:  # a seat added meanwhile: nothing was added
                form.add_error(None, exc.detail)
            else:
                self.message_user(request, f"{_plural(count, 'seat')} added to {event.name}.", messages.SUCCESS)
                return HttpResponseRedirect(_admin_url(event))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Add a seating block to {event.name}",
            "opts": self.opts,
            "original": event,
            "form": form,
            "adminform": helpers.AdminForm(
                form,  # type: ignore[arg-type]  # a plain form renders as a model form does here
                [(None, {"fields": ["rows", "seats_per_row", "first_number"]})],
                {},
            ),
            "has_view_permission": True,
        }
        return TemplateResponse(request, "admin/booking/event/seating_block.html", context)


# --- Seats -------------------------------------------------------------------


class LiveStatusFilter(admin.SimpleListFilter):
    """Status as every reader sees it: an expired hold counts as available."""

    title = "status"
    parameter_name = "status_now"

    def lookups(self, request, model_admin):
        return [
            (SeatStatus.AVAILABLE.value, "Available (incl. expired holds)"),
            (SeatStatus.LOCKED.value, "Held"),
            (SeatStatus.BOOKED.value, "Booked"),
            (SeatStatus.BLOCKED.value, "Blocked"),
            ("expired", "Expired holds not yet swept"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "expired":
            return queryset.expired_holds()
        if value in LIVE_STATUS_FILTERS:
            return queryset.live(value)
        return queryset


class AuditInline(admin.TabularInline):
    """Audit rows, newest first: read-only for everybody."""

    model = SeatEvent
    ordering = ("-created_at", "-id")
    extra = 0
    can_delete = False
    verbose_name = "audit row"
    verbose_name_plural = "Audit trail (newest first)"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SeatEventInline(AuditInline):
    fk_name = "seat"
    fields = ("created_at", "action", "holder", "booking_link", "actor")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor", "booking")

    @admin.display(description="Booking")
    def booking_link(self, obj):
        return _booking_link(obj.booking_id, obj.booking.reference if obj.booking_id else None)


@admin.register(Seat)
class SeatAdmin(SeatLayoutImportMixin, admin.ModelAdmin):
    list_display = ("seat", "event", "status_badge", "holder", "time_left", "booked_at", "booking_link")
    list_display_links = ("seat",)
    list_filter = (("event", admin.RelatedFieldListFilter), LiveStatusFilter)
    search_fields = ("=label", "^locked_by", "^booked_by")
    search_help_text = "A seat label (exact, e.g. A7) or the beginning of a holder's name."
    list_select_related = ("event", "booking")
    list_per_page = 100
    show_full_result_count = False
    ordering = ("id",)
    actions = ("release_holds", "book_for_holder", "cancel_bookings", "block_seats", "unblock_seats")
    inlines = (SeatEventInline,)
    state_fields = ("status", "locked_by", "locked_at", "lock_expires_at", "booked_by", "booked_at", "block_reason")
    fieldsets = (
        (None, {"fields": ("event", "label", "row", "number")}),
        ("State now", {"fields": ("status_badge", "holder", "time_left", "booking_link")}),
        (
            "Stored state",
            {
                "fields": state_fields,
                "classes": ("collapse",),
                "description": "Read-only: use the actions on the seat list (release, book, cancel), "
                "which follow the booking rules and write the audit trail.",
            },
        ),
    )
    add_fieldsets = ((None, {"fields": ("event", "label", "row", "number")}),)

    def get_queryset(self, request):
        seats = cast(SeatQuerySet, super().get_queryset(request))  # Seat's manager makes them
        return seats.with_live_status().annotate(db_now=Now())

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.fieldsets

    # A seat added or deleted here changes its event's seat map (and so its ETag).
    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        services.seat_maps_changed(event_ids=[obj.event_id])

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        services.seat_maps_changed(event_ids=[obj.event_id])

    def delete_queryset(self, request, queryset):
        event_ids = list(queryset.values_list("event_id", flat=True).distinct())
        super().delete_queryset(request, queryset)
        services.seat_maps_changed(event_ids=event_ids)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()  # a new seat has no history

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Buttons for the actions on this one seat (through the same confirmation page).
        extra_context = {**(extra_context or {}), "can_act_for_others": self.has_hold_for_others_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # A seat's identity and state never change through this form.
        return (
            "event",
            "label",
            "row",
            "number",
            "status_badge",
            "holder",
            "time_left",
            "booking_link",
            *self.state_fields,
        )

    @admin.display(description="Seat", ordering="id")
    def seat(self, obj):
        return obj.label

    @admin.display(description="Status", ordering="live_status")
    def status_badge(self, obj):
        live = getattr(obj, "live_status", obj.status)
        text, colour = BADGES.get(live, (live, "#555"))
        title = f"hold by {obj.locked_by} expired" if _hold_expired(obj) else ""
        return _badge(text, colour, title)

    @admin.display(description="Holder")
    def holder(self, obj):
        live = getattr(obj, "live_status", obj.status)
        if live == SeatStatus.LOCKED:
            return obj.locked_by
        if live == SeatStatus.BOOKED:
            return obj.booked_by
        if live == SeatStatus.BLOCKED:
            return format_html('<span style="color:#888">blocked: {}</span>', obj.block_reason or "no reason given")
        if _hold_expired(obj):
            return format_html('<span style="color:#888">{} (hold expired)</span>', obj.locked_by)
        return "—"

    @admin.display(description="Hold time left", ordering="lock_expires_at")
    def time_left(self, obj):
        if getattr(obj, "live_status", obj.status) != SeatStatus.LOCKED:
            return "—"
        return _time_left(obj.lock_expires_at, getattr(obj, "db_now", None))

    @admin.display(description="Booking", ordering="booking__reference")
    def booking_link(self, obj):
        return _booking_link(obj.booking_id, obj.booking.reference if obj.booking_id else None)

    # The actions: one confirmation page each, then the service; they act for any holder.

    def has_hold_for_others_permission(self, request) -> bool:
        return self.has_change_permission(request) and request.user.has_perm(HOLD_FOR_OTHERS)

    @admin.action(description="Release holds on the selected seats", permissions=["hold_for_others"])
    def release_holds(self, request, queryset):
        return self._confirm_and_run(
            request,
            queryset,
            action="release_holds",
            title="Release holds",
            explain="Held seats become available at once; their holders can no longer book them. "
            "Seats that are not held are skipped.",
            run=lambda ids, form: services.seats_admin_release(seat_ids=ids, actor=request.user),
            done="released",
        )

    @admin.action(description="Book the selected seats for a holder…", permissions=["hold_for_others"])
    def book_for_holder(self, request, queryset):
        return self._confirm_and_run(
            request,
            queryset,
            action="book_for_holder",
            title="Book for a holder",
            explain="Available seats, expired holds and the holder's own holds are booked for the holder. "
            "Seats held by someone else and seats already booked are skipped.",
            run=lambda ids, form: services.seats_admin_book(
                seat_ids=ids, holder=form.cleaned_data["holder"], actor=request.user
            ),
            done="booked for {holder}",
            form_class=HolderForm,
        )

    @admin.action(description="Cancel bookings of the selected seats", permissions=["hold_for_others"])
    def cancel_bookings(self, request, queryset):
        return self._confirm_and_run(
            request,
            queryset,
            action="cancel_bookings",
            title="Cancel bookings",
            explain="Booked seats become available again and can be sold to anyone. "
            "Seats that are not booked are skipped.",
            run=lambda ids, form: services.seats_admin_cancel(seat_ids=ids, actor=request.user),
            done="cancelled (available again)",
        )

    @admin.action(description="Block the selected seats (hold back from sale)…", permissions=["hold_for_others"])
    def block_seats(self, request, queryset):
        return self._confirm_and_run(
            request,
            queryset,
            action="block_seats",
            title="Block seats",
            explain="Available seats and expired holds are held back from sale (press, technical, sight line) "
            "until unblocked: nobody can hold or book them. Held, booked and blocked seats are skipped.",
            run=lambda ids, form: services.seats_admin_block(
                seat_ids=ids, reason=form.cleaned_data["reason"], actor=request.user
            ),
            done="blocked",
            form_class=BlockReasonForm,
        )

    @admin.action(description="Unblock the selected seats (back on sale)", permissions=["hold_for_others"])
    def unblock_seats(self, request, queryset):
        return self._confirm_and_run(
            request,
            queryset,
            action="unblock_seats",
            title="Unblock seats",
            explain="Blocked seats become available at once. Seats that are not blocked are skipped.",
            run=lambda ids, form: services.seats_admin_unblock(seat_ids=ids, actor=request.user),
            done="unblocked (available again)",
        )

    def _confirm_and_run(self, request, queryset, *, action, title, explain, run, done, form_class=None):
        """First show what was selected and ask (and the holder, if needed); on "confirm", run it."""
        confirmed = request.POST.get("confirm") == "yes"
        form = form_class(request.POST if confirmed else None) if form_class else None
        if confirmed and (form is None or form.is_valid()):
            ids = list(queryset.values_list("pk", flat=True))
            try:
                result = run(ids, form)
            except BookingError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
                return None
            self._report(request, result, done.format(**(form.cleaned_data if form else {})))
            return None

        counts = queryset.aggregate(
            total=Count("pk"),
            available=Count("pk", filter=is_available_now()),
            held=Count("pk", filter=hold_is_live()),
            booked=Count("pk", filter=is_booked()),
            blocked=Count("pk", filter=is_blocked()),
        )
        sample_size = 50
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "explain": explain,
            "opts": self.opts,
            "action": action,
            "counts": counts,
            "sample": [
                {
                    "label": seat.label,
                    "event": seat.event,
                    "status_html": self.status_badge(seat),
                    "holder_html": self.holder(seat),
                    "time_left_text": self.time_left(seat),
                }
                for seat in queryset.select_related("event")[:sample_size]
            ],
            "sample_size": sample_size,
            "form": form,
            "select_across": request.POST.get("select_across", "0"),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:booking_seat_changelist")
            + (f"?{request.GET.urlencode()}" if request.GET else ""),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/booking/seat/action_confirmation.html", context)

    def _report(self, request, result: services.AdminResult, done: str) -> None:
        changed = len(result.changed)
        if changed and result.references:
            links = dict(Booking.objects.filter(reference__in=result.references).values_list("reference", "pk"))
            self.message_user(
                request,
                format_html(
                    "{} {}, booking{} {}.",
                    _plural(changed, "seat"),
                    done,
                    "" if len(result.references) == 1 else "s",
                    format_html_join(", ", "{}", ((_booking_link(links.get(ref), ref),) for ref in result.references)),
                ),
                messages.SUCCESS,
            )
        elif changed:
            self.message_user(request, f"{_plural(changed, 'seat')} {done}.", messages.SUCCESS)
        else:
            self.message_user(request, f"No seat {done}.", messages.WARNING)
        if not result.skipped:
            return
        by_reason: dict[str, list[int]] = defaultdict(list)
        for seat_id, reason in sorted(result.skipped.items()):
            by_reason[reason].append(seat_id)
        max_reasons, max_seats = 10, 10
        shown = list(by_reason.items())[:max_reasons]
        labels = dict(
            Seat.objects.filter(pk__in=[i for _, ids in shown for i in ids[:max_seats]]).values_list("pk", "label")
        )
        parts = []
        for reason, ids in shown:
            names = ", ".join(labels.get(i, f"#{i}") for i in ids[:max_seats])
            if len(ids) > max_seats:
                names += f" and {len(ids) - max_seats} more"
            parts.append(f"{names}: {reason}")
        rest = len(by_reason) - len(shown)
        text = f"{_plural(len(result.skipped), 'seat')} skipped. " + "; ".join(parts)
        if rest:
            text += f"; and seats skipped for {rest} other reasons"
        self.message_user(request, text + ".", messages.WARNING)


# --- Bookings ----------------------------------------------------------------


def _has_seat_now() -> Exists:
    """A booking is confirmed while a seat is still booked in it (booked seats point to it)."""
    return Exists(Seat.objects.filter(booking=OuterRef("pk")))


class BookingStatusFilter(admin.SimpleListFilter):
    """Confirmed while a seat is still booked in it, cancelled once none is (as the API says)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("confirmed", "Confirmed (a seat booked now)"), ("cancelled", "Cancelled (no seat left)")]

    def queryset(self, request, queryset):
        if self.value() == "confirmed":
            return queryset.filter(_has_seat_now())
        if self.value() == "cancelled":
            return queryset.filter(~_has_seat_now())
        return queryset


class BookingAuditInline(AuditInline):
    """The booking's audit rows: its seats booked, and cancelled, by whom."""

    fk_name = "booking"
    fields = ("created_at", "action", "seat_link", "holder", "actor")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("seat", "actor")

    @admin.display(description="Seat")
    def seat_link(self, obj):
        return format_html('<a href="{}">{}</a>', _admin_url(obj.seat), obj.seat.label)


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    """Bookings, read-only: confirms and the seats' book action make them; the cancel action
    (the service's, as the box office: any booking, any time) is the one change here."""

    list_display = ("reference", "event", "holder", "order", "seats_now", "status_badge", "created_at")
    list_display_links = ("reference",)
    list_filter = (("event", admin.RelatedFieldListFilter), BookingStatusFilter)
    # The search is get_search_results' own; these only make the admin show the box.
    search_fields = ("reference", "order_id", "holder")
    search_help_text = (
        "A booking reference (any case, hyphens and spaces ignored: 7kq2-m9xd), "
        "a shop's order id (exact) or the beginning of a holder's name."
    )
    list_select_related = ("event",)
    list_per_page = 100
    show_full_result_count = False
    ordering = ("-created_at", "-id")
    actions = ("cancel_bookings",)
    inlines = (BookingAuditInline,)
    fields = ("reference", "event", "holder", "order", "created_at", "status_badge", "seat_list", "cancelled_list")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("event").annotate(seat_n=Count("seats"))

    def get_search_results(self, request, queryset, search_term):
        """A reference as a customer reads it out (normalize_reference), an order id, a holder."""
        term = search_term.strip()
        if not term:
            return queryset, False
        match = Q(order_id=term) | Q(holder__istartswith=term)
        reference = normalize_reference(term)
        if reference is not None:
            match |= Q(reference=reference)
        return queryset.filter(match), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_hold_for_others_permission(self, request) -> bool:
        return self.has_view_permission(request) and request.user.has_perm(HOLD_FOR_OTHERS)

    @admin.display(description="Order id", ordering="order_id")
    def order(self, obj):
        return obj.order_id or "—"

    @admin.display(description="Seats now", ordering="seat_n")
    def seats_now(self, obj):
        return obj.seat_n

    @admin.display(description="Status", ordering="seat_n")
    def status_badge(self, obj):
        if obj.seat_n:
            return _badge("confirmed", "#1565c0")
        return _badge("cancelled", "#757575")

    def _payload(self, obj) -> dict:
        """The booking as the API shows it (its seats now, and those cancelled from it), once per page."""
        if not hasattr(obj, "_payload"):
            row = {column: getattr(obj, column) for column in BOOKING_COLUMNS}
            obj._payload = bookings_with_seats([row])[0]
        return obj._payload

    @admin.display(description="Seats now")
    def seat_list(self, obj):
        seats = self._payload(obj)["seats"]
        if not seats:
            return "—"
        return format_html(
            '{} <span class="help">(<a href="{}">in the seat list</a>)</span>',
            _seat_links(seats),
            _changelist("seat", booking__id__exact=obj.pk),
        )

    @admin.display(description="Cancelled seats")
    def cancelled_list(self, obj):
        return _seat_links(self._payload(obj)["cancelledSeats"])

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_cancel": self.has_hold_for_others_permission(request),
            "audit_url": _changelist("seatevent", booking__id__exact=object_id),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        return [
            path("find/", self.admin_site.admin_view(self.find_view), name="booking_booking_find"),
            *super().get_urls(),
        ]

    def find_view(self, request: HttpRequest):
        """The index's search box: straight to the booking when one matches, else the list's search."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        term = request.GET.get("q", "").strip()
        if term:
            found, _ = self.get_search_results(request, Booking.objects.all(), term)
            matches = list(found.values_list("pk", flat=True)[:2])
            if len(matches) == 1:
                return HttpResponseRedirect(reverse("admin:booking_booking_change", args=[matches[0]]))
        return HttpResponseRedirect(_changelist("booking", **({"q": term} if term else {})))

    @admin.action(description="Cancel the selected bookings", permissions=["hold_for_others"])
    def cancel_bookings(self, request, queryset):
        """Ask first; on "confirm", cancel each booking whole, through the service, as the box office."""
        selected = Booking.objects.filter(pk__in=queryset.values("pk"))  # without the list's annotations
        if request.POST.get("confirm") == "yes":
            self._cancel(request, list(selected.order_by("created_at", "id").values_list("reference", flat=True)))
            return None
        sample_size = 50
        counts = selected.aggregate(total=Count("pk"), confirmed=Count("pk", filter=_has_seat_now()))
        counts["cancelled"] = counts["total"] - counts["confirmed"]
        rows = list(selected.order_by("-created_at", "-id").values(*BOOKING_COLUMNS)[:sample_size])
        events = {e.pk: e for e in Event.objects.filter(pk__in={row["event_id"] for row in rows})}
        context = {
            **self.admin_site.each_context(request),
            "title": "Cancel bookings",
            "explain": "Every seat still booked in each selected booking becomes available at once and can be "
            "sold to anyone, whenever the event starts. Bookings with nothing left to cancel are skipped.",
            "opts": self.opts,
            "action": "cancel_bookings",
            "counts": counts,
            "sample": [
                {**payload, "event_obj": events.get(payload["event"]), "seat_labels": _seat_links(payload["seats"])}
                for payload in bookings_with_seats(rows)
            ],
            "sample_size": sample_size,
            "select_across": request.POST.get("select_across", "0"),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": _changelist("booking") + (f"?{request.GET.urlencode()}" if request.GET else ""),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/booking/booking/action_confirmation.html", context)

    def _cancel(self, request, references: list[str]) -> None:
        cancelled: list[tuple[str, list[str]]] = []
        refused: list[tuple[str, BookingError]] = []
        for reference in references:
            try:
                result = services.booking_cancel(reference=reference, holder=None, actor=request.user)
            except BookingError as exc:  # nothing left to cancel, busy, gone meanwhile: that booking only
                refused.append((reference, exc))
            else:
                cancelled.append((reference, [seat["label"] for seat in result.seats]))
        shown = 20
        if cancelled:
            parts = [f"{reference} ({', '.join(labels)})" for reference, labels in cancelled[:shown]]
            if len(cancelled) > shown:
                parts.append(f"and {len(cancelled) - shown} more")
            seats = sum(len(labels) for _, labels in cancelled)
            self.message_user(
                request,
                f"{_plural(len(cancelled), 'booking')} cancelled, {_plural(seats, 'seat')} available again: "
                + "; ".join(parts)
                + ".",
                messages.SUCCESS,
            )
        elif not refused:
            self.message_user(request, "No booking cancelled.", messages.WARNING)
        for reference, error in refused[:shown]:
            level = messages.WARNING if isinstance(error, BookingCancelled) else messages.ERROR
            self.message_user(request, f"{reference} not cancelled: {error.detail}", level)
        if len(refused) > shown:
            self.message_user(request, f"And {len(refused) - shown} more bookings not cancelled.", messages.WARNING)


# --- Audit trail -------------------------------------------------------------


class HolderFilter(admin.SimpleListFilter):
    """A text box, not a list: an event can have thousands of holders."""

    title = "holder"
    parameter_name = "holder"
    template = "admin/booking/input_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self) -> bool:
        return True

    def choices(self, changelist):
        yield {
            "value": self.value() or "",
            "clear_url": changelist.get_query_string(remove=[self.parameter_name]),
            "hidden": [(k, v) for k, v in changelist.params.items() if k != self.parameter_name],
        }

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(holder=self.value())
        return queryset


@admin.register(SeatEvent)
class SeatEventAdmin(admin.ModelAdmin):
    """The audit trail: browsable, never editable, by anybody."""

    list_display = ("created_at", "action", "seat_link", "event", "holder_link", "booking_link", "actor")
    list_filter = ("action", ("event", admin.RelatedFieldListFilter), HolderFilter)
    search_fields = ("=holder", "=seat__label")
    search_help_text = "A holder (exact), a seat label (exact, e.g. A7) or a booking reference."
    list_select_related = ("seat", "event", "actor", "booking")
    list_per_page = 100
    show_full_result_count = False
    ordering = ("-created_at", "-id")
    fields = ("created_at", "action", "seat", "event", "holder", "booking", "actor")
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        reference = normalize_reference(search_term.strip())
        if reference is not None:
            found = found | queryset.filter(booking__reference=reference)
        return found, may_have_duplicates

    @admin.display(description="Booking", ordering="booking__reference")
    def booking_link(self, obj):
        return _booking_link(obj.booking_id, obj.booking.reference if obj.booking_id else None)

    @admin.display(description="Seat", ordering="seat__label")
    def seat_link(self, obj):
        return format_html('<a href="{}">{}</a>', _admin_url(obj.seat), obj.seat.label)

    @admin.display(description="Holder", ordering="holder")
    def holder_link(self, obj):
        if not obj.holder:
            return "—"
        return format_html('<a href="?{}">{}</a>', urlencode({"holder": obj.holder}), obj.holder)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Webhooks ----------------------------------------------------------------

#: The types an endpoint subscribes to; webhook.test is sent on demand, to one endpoint.
SUBSCRIBABLE_TYPES = [(value, label) for value, label in WebhookEventType.choices if value != WebhookEventType.TEST]
#: How long the old secret goes on signing after a rotation (the service's default).
ROTATION_OVERLAP: timedelta = inspect.signature(webhooks.webhook_secret_rotate).parameters["overlap"].default
#: Ids per call when resending a whole list's selection (one transaction each).
RESEND_CHUNK = 1000

DELIVERY_BADGES = {
    # outcome: (text, background)
    "pending": ("pending", "#546e7a"),
    "retrying": ("retrying", "#e65100"),
    "delivered": ("delivered", "#2e7d32"),
    "failed": ("failed", "#c62828"),
}


def _secret_hint(secret: str) -> str:
    """Enough of a secret to tell two apart, never enough to sign with."""
    return f"whsec_…{secret[-4:]}" if secret else "—"


def _duration(span: timedelta) -> str:
    hours = int(span / timedelta(hours=1))
    return f"{hours} hours" if span == timedelta(hours=hours) else str(span)


def _when(moment: datetime | None) -> str:
    return formats.localize(timezone.localtime(moment)) if moment else "—"


def _short_when(moment: datetime | None):
    """A time in a list's column, on one line."""
    if moment is None:
        return "—"
    when = formats.date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT")
    return format_html('<span style="white-space:nowrap">{}</span>', when)


def _delivery_outcome(delivery: WebhookDelivery) -> str:
    if delivery.state == WebhookDelivery.State.PENDING and delivery.attempts:
        return "retrying"
    return delivery.state


def _delivery_badge(delivery: WebhookDelivery):
    text, colour = DELIVERY_BADGES.get(_delivery_outcome(delivery), (delivery.state, "#555"))
    return _badge(text, colour, delivery.last_error)


def _pretty_json(value) -> str:
    return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', json.dumps(value, indent=2))


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        validators=[URLValidator(schemes=["http", "https"])],
        widget=forms.URLInput(attrs={"class": "vURLField"}),
        help_text="Where the messages are POSTed (http:// or https://).",
    )
    event_types = forms.MultipleChoiceField(
        choices=SUBSCRIBABLE_TYPES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every type (webhook.test is only sent on demand).",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "event_types", "active")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # An endpoint subscribed to webhook.test alone (create_webhook --events) keeps it ticked:
        # unticking everything would subscribe it to every type.
        if self.instance.pk and WebhookEventType.TEST in (self.instance.event_types or []):
            field = cast(forms.MultipleChoiceField, self.fields["event_types"])
            field.choices = [*SUBSCRIBABLE_TYPES, (WebhookEventType.TEST.value, "webhook.test (on demand only)")]

    def clean_event_types(self) -> list[str]:
        return sorted(set(self.cleaned_data["event_types"]))


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Integrators' receivers. The service makes the signing secret; it is shown once, on the page
    that answers the create or the rotation (never in a message: the messages framework keeps
    them in a cookie, signed but readable), to users who may change endpoints, and never again."""

    form = WebhookEndpointForm
    list_display = (
        "url",
        "description",
        "types",
        "active",
        "disabled_reason",
        "failing_since",
        "pending_deliveries",
        "failed_deliveries",
    )
    list_filter = ("active",)
    search_fields = ("url", "description")
    ordering = ("id",)
    actions = ("send_test_messages", "rotate_secrets", "disable_endpoints", "enable_endpoints")
    add_fieldsets = (
        (
            None,
            {
                "fields": ("url", "description", "event_types"),
                "description": "Its signing secret is made when you save, and shown once.",
            },
        ),
    )
    fieldsets = (
        (None, {"fields": ("url", "description", "event_types", "active")}),
        (
            "Signing secret",
            {
                "fields": ("secret_hint", "previous_secret_hint"),
                "description": "Shown once, when it was made: rotate it to get a new one.",
            },
        ),
        ("Health", {"fields": ("disabled_reason", "failing_since", "delivery_summary", "created_at")}),
    )
    readonly_fields = (
        "secret_hint",
        "previous_secret_hint",
        "disabled_reason",
        "failing_since",
        "delivery_summary",
        "created_at",
    )

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                pending_n=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.PENDING)),
                failed_n=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.FAILED)),
            )
        )

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.readonly_fields

    def has_add_permission(self, request):
        # The page after the create shows the secret: that takes the right to change endpoints.
        return super().has_add_permission(request) and self.has_change_permission(request)

    def add_view(self, request, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "show_save_and_add_another": False, "show_save_and_continue": False}
        return super().add_view(request, form_url, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_act": self.has_change_permission(request),
            "deliveries_url": _changelist("webhookdelivery", endpoint__id__exact=object_id),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if not change:  # the service makes it, and its secret
            created = webhooks.webhook_endpoint_create(
                url=obj.url, event_types=obj.event_types, description=obj.description
            )
            obj.pk, obj.secret, obj.event_types = created.pk, created.secret, created.event_types
            obj._state.adding, obj._state.db = False, created._state.db
            return
        # Only what the form changed: a rotation or a failure recorded meanwhile stays.
        fields = {name: getattr(obj, name) for name in form.changed_data if name in WebhookEndpointForm.Meta.fields}
        active = fields.pop("active", None)
        for name, value in fields.items():
            setattr(obj, name, value)
        if fields:
            obj.save(update_fields=list(fields))
        if active is not None:
            webhooks.webhook_endpoints_set_active([obj.pk], active=active, actor=request.user)

    def response_add(self, request, obj, post_url_continue=None):
        return self._secrets_page(request, [(obj, obj.secret)], created=True)

    def get_deleted_objects(self, objs, request):
        """The confirmation names each endpoint and counts its deliveries (they go with it), rather
        than listing thousands of them; deliveries are never deleted on their own, so no right to."""
        endpoints = list(objs)
        counts = {
            row["endpoint"]: row
            for row in WebhookDelivery.objects.filter(endpoint__in=endpoints)
            .values("endpoint")
            .annotate(
                total=Count("pk"),
                pending=Count("pk", filter=Q(state=WebhookDelivery.State.PENDING)),
                failed=Count("pk", filter=Q(state=WebhookDelivery.State.FAILED)),
            )
            .order_by()
        }
        listed: list = []
        for endpoint in endpoints:
            row = counts.get(endpoint.pk, {"total": 0, "pending": 0, "failed": 0})
            listed.append(format_html('Webhook endpoint: <a href="{}">{}</a>', _admin_url(endpoint), endpoint))
            listed.append(
                [
                    f"{_plural(row['total'], 'delivery', 'deliveries')} ({row['pending']} pending, {row['failed']} failed)"
                ]
            )
        total = sum(row["total"] for row in counts.values())
        model_count = {"webhook endpoints": len(endpoints), **({"webhook deliveries": total} if total else {})}
        return listed, model_count, set(), []

    # --- The list's columns and the change page's read-only fields

    @admin.display(description="Types")
    def types(self, obj):
        return ", ".join(obj.event_types) if obj.event_types else "all"

    def _deliveries_link(self, obj, outcome: str, count: int):
        if not count:
            return "0"
        return format_html(
            '<a href="{}">{}</a>', _changelist("webhookdelivery", endpoint__id__exact=obj.pk, outcome=outcome), count
        )

    @admin.display(description="Pending", ordering="pending_n")
    def pending_deliveries(self, obj):
        return self._deliveries_link(obj, "pending", obj.pending_n)

    @admin.display(description="Failed", ordering="failed_n")
    def failed_deliveries(self, obj):
        return self._deliveries_link(obj, "failed", obj.failed_n)

    @admin.display(description="Secret")
    def secret_hint(self, obj):
        return format_html("<code>{}</code>", _secret_hint(obj.secret))

    @admin.display(description="Previous secret")
    def previous_secret_hint(self, obj):
        if not obj.previous_secret:
            return "—"
        expires = obj.previous_secret_expires_at
        if expires and expires > timezone.now():
            return format_html(
                "<code>{}</code>: signs too (a second signature) until {}",
                _secret_hint(obj.previous_secret),
                _when(expires),
            )
        return format_html("<code>{}</code>: stopped signing {}", _secret_hint(obj.previous_secret), _when(expires))

    @admin.display(description="Deliveries")
    def delivery_summary(self, obj):
        return format_html(
            '{} pending, {} failed. <a href="{}">All its deliveries</a>',
            self.pending_deliveries(obj),
            self.failed_deliveries(obj),
            _changelist("webhookdelivery", endpoint__id__exact=obj.pk),
        )

    # --- Actions (each also a button on the endpoint's page)

    @staticmethod
    def _selected(queryset) -> list[WebhookEndpoint]:
        """The selection, read again without the list's counts."""
        return list(WebhookEndpoint.objects.filter(pk__in=list(queryset.values_list("pk", flat=True))).order_by("pk"))

    @staticmethod
    def _back(request, selected: list[WebhookEndpoint]):
        """From an endpoint's own page, back to it; from the list, back to the list."""
        if request.POST.get("_back") and len(selected) == 1:
            return HttpResponseRedirect(_admin_url(selected[0]))
        return None

    @admin.action(description="Send a test message (webhook.test) to the selected endpoints", permissions=["change"])
    def send_test_messages(self, request, queryset):
        selected = self._selected(queryset)
        sent = []
        for endpoint in selected:
            if not endpoint.active:
                self.message_user(
                    request, f"{endpoint} is disabled: enable it first, or the test fails unsent.", messages.WARNING
                )
                continue
            message = webhooks.webhook_send_test(endpoint)
            if message is not None:
                sent.append((endpoint, message))
        if sent:
            self.message_user(
                request,
                format_html(
                    "Test message sent to {} (how it went: its delivery).",
                    format_html_join(
                        ", ",
                        '{} (<a href="{}"><code>{}</code></a>)',
                        (
                            (endpoint, _changelist("webhookdelivery", q=message.msg_id), message.msg_id)
                            for endpoint, message in sent
                        ),
                    ),
                ),
                messages.SUCCESS,
            )
        return self._back(request, selected)

    @admin.action(description="Rotate the signing secret of the selected endpoints…", permissions=["change"])
    def rotate_secrets(self, request, queryset):
        selected = self._selected(queryset)
        if request.POST.get("confirm") != "yes":
            return self._confirm(
                request,
                selected,
                action="rotate_secrets",
                title="Rotate signing secrets",
                explain=f"Each endpoint gets a new secret, shown once on the next page. The current one goes on "
                f"signing too (a second signature) for {_duration(ROTATION_OVERLAP)}, so the receiver can switch "
                "over without missing a message; a secret from an earlier rotation stops signing at once.",
            )
        rotated = []
        for endpoint in selected:
            secret = webhooks.webhook_secret_rotate(endpoint)
            self.log_change(request, endpoint, "Rotated its signing secret.")
            rotated.append((endpoint.pk, secret))
        fresh = WebhookEndpoint.objects.in_bulk([pk for pk, _ in rotated])
        return self._secrets_page(request, [(fresh[pk], secret) for pk, secret in rotated], created=False)

    @admin.action(description="Disable the selected endpoints…", permissions=["change"])
    def disable_endpoints(self, request, queryset):
        selected = self._selected(queryset)
        if request.POST.get("confirm") != "yes":
            return self._confirm(
                request,
                selected,
                action="disable_endpoints",
                title="Disable endpoints",
                explain="A disabled endpoint is sent nothing: no message is written for it while it is disabled "
                "(those changes never reach it, even after it is enabled again), and its pending deliveries fail "
                "at their next attempt (resend them once it is enabled).",
            )
        self._set_active(request, selected, active=False)
        return self._back(request, selected)

    @admin.action(description="Enable the selected endpoints", permissions=["change"])
    def enable_endpoints(self, request, queryset):
        selected = self._selected(queryset)
        self._set_active(request, selected, active=True)
        return self._back(request, selected)

    def _set_active(self, request, selected: list[WebhookEndpoint], *, active: bool) -> None:
        changed = set(
            webhooks.webhook_endpoints_set_active([e.pk for e in selected], active=active, actor=request.user)
        )
        changing = [endpoint for endpoint in selected if endpoint.pk in changed]
        for endpoint in changing:
            self.log_change(request, endpoint, "Enabled." if active else "Disabled.")
        word = "enabled" if active else "disabled"
        if not changing:
            self.message_user(request, f"No endpoint {word}: they were {word} already.", messages.WARNING)
        elif active:
            failed = _changelist(
                "webhookdelivery",
                outcome="failed",
                **({"endpoint__id__exact": changing[0].pk} if len(changing) == 1 else {}),
            )
            self.message_user(
                request,
                format_html(
                    '{} enabled: new messages go to them from now on. Deliveries that failed meanwhile: <a href="{}">'
                    "resend them</a>.",
                    _plural(len(changing), "endpoint"),
                    failed,
                ),
                messages.SUCCESS,
            )
        else:
            self.message_user(request, f"{_plural(len(changing), 'endpoint')} disabled.", messages.SUCCESS)

    def _confirm(self, request, selected: list[WebhookEndpoint], *, action: str, title: str, explain: str):
        now = timezone.now()
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "explain": explain,
            "opts": self.opts,
            "action": action,
            "endpoints": [
                {
                    "endpoint": endpoint,
                    "types": self.types(endpoint),
                    "secret_hint": _secret_hint(endpoint.secret),
                    "previous_signing": bool(
                        endpoint.previous_secret
                        and endpoint.previous_secret_expires_at
                        and endpoint.previous_secret_expires_at > now
                    ),
                }
                for endpoint in selected
            ],
            "select_across": request.POST.get("select_across", "0"),
            "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "back": request.POST.get("_back", ""),
            "changelist_url": _admin_url(selected[0])
            if request.POST.get("_back") and len(selected) == 1
            else _changelist("webhookendpoint"),
            "media": self.media,
        }
        return TemplateResponse(request, "admin/booking/webhookendpoint/action_confirmation.html", context)

    def _secrets_page(self, request, rows: list[tuple[WebhookEndpoint, str]], *, created: bool):
        """The one page that shows secrets: rendered in answer to the POST that made them, so they
        are in no cookie, no session and no log; the admin's pages are never cached."""
        context = {
            **self.admin_site.each_context(request),
            "title": "The new endpoint's signing secret" if created else "New signing secrets",
            "opts": self.opts,
            "created": created,
            "rows": [
                {"endpoint": endpoint, "secret": secret, "previous_until": _when(endpoint.previous_secret_expires_at)}
                for endpoint, secret in rows
            ],
            "changelist_url": _changelist("webhookendpoint"),
        }
        response = TemplateResponse(request, "admin/booking/webhookendpoint/secrets.html", context)
        add_never_cache_headers(response)
        return response


class DeliveryOutcomeFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request, model_admin):
        return [
            ("pending", "Pending (not tried yet, or retrying)"),
            ("retrying", "Retrying (an attempt failed, more to come)"),
            ("delivered", "Delivered"),
            ("failed", "Failed (no more attempts)"),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "retrying":
            return queryset.filter(state=WebhookDelivery.State.PENDING, attempts__gt=0)
        if value in WebhookDelivery.State.values:
            return queryset.filter(state=value)
        return queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """One message to one endpoint, and how its attempts went: read-only, but for sending it again."""

    list_display = (
        "message_type",
        "msg_id",
        "endpoint_link",
        "state_badge",
        "attempts",
        "http_status",
        "last_error_short",
        "next_attempt",
        "delivered",
        "created",
    )
    list_display_links = ("msg_id",)
    list_filter = (("endpoint", admin.RelatedFieldListFilter), "message__type", DeliveryOutcomeFilter)
    search_fields = ("message__msg_id__exact", "endpoint__url")  # exact, as the messages' (below)
    search_help_text = "A message's webhook-id (exact, msg_…) or part of an endpoint's URL."
    list_per_page = 100
    show_full_result_count = False
    ordering = ("-id",)
    actions = ("resend_deliveries",)
    fieldsets = (
        (
            None,
            {"fields": ("message_link", "message_type", "endpoint_link", "state_badge", "attempts", "next_attempt")},
        ),
        (
            "Last attempt",
            {
                "fields": (
                    "last_attempt_at",
                    "last_status_code",
                    "last_duration_ms",
                    "last_error",
                    "response",
                    "delivered_at",
                )
            },
        ),
        (
            "What is sent",
            {
                "fields": ("headers", "payload"),
                "description": "The same webhook-id and body on every attempt; the body is sent as compact JSON.",
            },
        ),
    )
    readonly_fields = (
        "message_link",
        "message_type",
        "endpoint_link",
        "state_badge",
        "attempts",
        "next_attempt",
        "last_attempt_at",
        "last_status_code",
        "last_duration_ms",
        "last_error",
        "response",
        "delivered_at",
        "headers",
        "payload",
    )

    def get_queryset(self, request):
        # The list never shows a payload (the page of one delivery reads it).
        return super().get_queryset(request).select_related("endpoint", "message").defer("message__payload")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # they go with their endpoint, or their message when it is purged

    def has_resend_permission(self, request) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_resend": self.has_resend_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description="Type", ordering="message__type")
    def message_type(self, obj):
        return obj.message.type

    @admin.display(description="Message (webhook-id)", ordering="message__msg_id")
    def msg_id(self, obj):
        return format_html("<code>{}</code>", obj.message.msg_id)

    @admin.display(description="Message")
    def message_link(self, obj):
        return format_html('<a href="{}"><code>{}</code></a>', _admin_url(obj.message), obj.message.msg_id)

    @admin.display(description="Endpoint", ordering="endpoint__url")
    def endpoint_link(self, obj):
        return format_html('<a href="{}">{}</a>', _admin_url(obj.endpoint), obj.endpoint.url)

    @admin.display(description="Outcome", ordering="state")
    def state_badge(self, obj):
        return _delivery_badge(obj)

    @admin.display(description="HTTP", ordering="last_status_code")
    def http_status(self, obj):
        return obj.last_status_code or "—"

    @admin.display(description="Last error")
    def last_error_short(self, obj):
        if not obj.last_error:
            return "—"
        short = obj.last_error if len(obj.last_error) <= 60 else obj.last_error[:59] + "…"
        return format_html('<span title="{}">{}</span>', obj.last_error, short)

    @admin.display(description="Next attempt", ordering="next_attempt_at")
    def next_attempt(self, obj):
        if obj.state != WebhookDelivery.State.PENDING:
            return "—"
        if obj.leased_until and obj.leased_until > timezone.now():
            return "being sent now"
        return _short_when(obj.next_attempt_at)

    @admin.display(description="Delivered", ordering="delivered_at")
    def delivered(self, obj):
        return _short_when(obj.delivered_at)

    @admin.display(description="Created", ordering="message__created_at")
    def created(self, obj):
        return _short_when(obj.message.created_at)

    @admin.display(description="Response (its start)")
    def response(self, obj):
        if not obj.response_excerpt:
            return "—"
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', obj.response_excerpt)

    @admin.display(description="Headers")
    def headers(self, obj):
        lines = [
            ("content-type", "application/json"),
            ("webhook-id", obj.message.msg_id),
            ("webhook-timestamp", "the attempt's time, in Unix seconds"),
            ("webhook-signature", "v1,… per secret that signs (not shown)"),
        ]
        return format_html('<pre style="margin:0">{}</pre>', "\n".join(f"{name}: {value}" for name, value in lines))

    @admin.display(description="Body")
    def payload(self, obj):
        return _pretty_json(obj.message.payload)

    @admin.action(description="Resend the selected deliveries", permissions=["resend"])
    def resend_deliveries(self, request, queryset):
        """Send each again now, with its message's webhook-id (receivers that dedupe on it see it once)."""
        rows = list(queryset.order_by("pk").values_list("pk", "endpoint__active"))
        ids = [pk for pk, active in rows if active]
        resent = sum(
            webhooks.webhook_deliveries_resend(ids[start : start + RESEND_CHUNK])
            for start in range(0, len(ids), RESEND_CHUNK)
        )
        if resent:
            self.message_user(
                request,
                f"{_plural(resent, 'delivery', 'deliveries')} sent again now, with their messages' webhook-id.",
                messages.SUCCESS,
            )
        if len(rows) > len(ids):
            self.message_user(
                request,
                f"{len(rows) - len(ids)} not resent: their endpoint is disabled (enable it first).",
                messages.WARNING,
            )
        if request.POST.get("_back") and len(rows) == 1:
            return HttpResponseRedirect(reverse("admin:booking_webhookdelivery_change", args=[rows[0][0]]))
        return None


class WebhookMessageDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ("delivery_link", "endpoint", "outcome", "attempts", "last_status_code", "last_error", "delivered_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Deliveries (one per endpoint)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("endpoint")

    @admin.display(description="Delivery")
    def delivery_link(self, obj):
        return format_html('<a href="{}">#{}</a>', _admin_url(obj), obj.pk)

    @admin.display(description="Outcome")
    def outcome(self, obj):
        return _delivery_badge(obj)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WebhookMessage)
class WebhookMessageAdmin(admin.ModelAdmin):
    """The outbox, read-only: each message as sent, and its deliveries (one per endpoint)."""

    list_display = ("msg_id", "type", "created_at", "deliveries")
    list_filter = ("type",)
    # msg_id__exact, not "=msg_id" (iexact: UPPER() on both sides, which its unique index cannot serve).
    search_fields = ("msg_id__exact",)
    search_help_text = "A webhook-id (exact, msg_…)."
    list_per_page = 100
    show_full_result_count = False
    ordering = ("-id",)
    fields = ("msg_id", "type", "created_at", "body")
    readonly_fields = fields
    inlines = (WebhookMessageDeliveryInline,)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .defer("payload")
            .annotate(
                delivery_n=Count("deliveries"),
                delivered_n=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.DELIVERED)),
                failed_n=Count("deliveries", filter=Q(deliveries__state=WebhookDelivery.State.FAILED)),
            )
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # purged when delivered everywhere and old (webhook_messages_purge)

    @admin.display(description="Deliveries", ordering="delivery_n")
    def deliveries(self, obj):
        pending = obj.delivery_n - obj.delivered_n - obj.failed_n
        return format_html(
            '<a href="{}">{}</a>: {} delivered, {} pending, {} failed',
            _changelist("webhookdelivery", q=obj.msg_id),
            obj.delivery_n,
            obj.delivered_n,
            pending,
            obj.failed_n,
        )

    @admin.display(description="Body")
    def body(self, obj):
        return _pretty_json(obj.payload)


# --- Users and their API tokens ---------------------------------------------

User = get_user_model()


class ApiTokenInline(admin.StackedInline):
    """The user's API token; delete it here to revoke it, or issue a new one from the user list."""

    model = Token
    fields = ("key", "created")
    readonly_fields = fields
    extra = 0
    max_num = 1
    verbose_name = "API token"
    verbose_name_plural = "API token"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _hold_for_others_permission() -> Permission:
    return Permission.objects.get(content_type__app_label="booking", codename="hold_for_others")


class HoldForOthersFilter(admin.SimpleListFilter):
    title = "may hold for others"
    parameter_name = "hold_for_others"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(may_hold_for_others=True)
        if self.value() == "no":
            return queryset.filter(may_hold_for_others=False)
        return queryset


if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class BoxOfficeUserAdmin(UserAdmin):
    """The stock user admin (permissions included), plus API tokens and the box-office right."""

    list_display = ("username", "email", "is_staff", "hold_for_others", "api_token", "is_active", "last_login")
    list_filter = (*UserAdmin.list_filter, HoldForOthersFilter)
    inlines = (ApiTokenInline,)
    actions = ("grant_hold_for_others", "revoke_hold_for_others", "issue_api_token")

    def get_queryset(self, request):
        granted = Q(codename="hold_for_others", content_type__app_label="booking")
        direct = Permission.objects.filter(granted, user=OuterRef("pk"))
        via_group = Permission.objects.filter(granted, group__user=OuterRef("pk"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                may_hold_for_others=Case(
                    When(Q(is_superuser=True, is_active=True) | Exists(direct) | Exists(via_group), then=Value(True)),
                    default=Value(False),
                ),
                has_token=Exists(Token.objects.filter(user=OuterRef("pk"))),
            )
        )

    @admin.display(description="May hold for others", boolean=True, ordering="may_hold_for_others")
    def hold_for_others(self, obj):
        return obj.may_hold_for_others

    @admin.display(description="API token", boolean=True, ordering="has_token")
    def api_token(self, obj):
        return obj.has_token

    @admin.action(description="Grant “hold, book and release for any holder”", permissions=["change"])
    def grant_hold_for_others(self, request, queryset):
        permission = _hold_for_others_permission()
        users = list(queryset)
        for user in users:
            user.user_permissions.add(permission)
        self.message_user(request, f"{_plural(len(users), 'user')} may now act for any holder.", messages.SUCCESS)

    @admin.action(description="Revoke “hold, book and release for any holder”", permissions=["change"])
    def revoke_hold_for_others(self, request, queryset):
        permission = _hold_for_others_permission()
        users = list(queryset)
        for user in users:
            user.user_permissions.remove(permission)
        self.message_user(
            request,
            f"{_plural(len(users), 'user')} no longer hold the right directly (a group or superuser status may "
            "still grant it).",
            messages.SUCCESS,
        )

    @admin.action(description="Issue a new API token (the old one stops working)", permissions=["change"])
    def issue_api_token(self, request, queryset):
        """The new keys are shown on the page that answers this POST, as a webhook's secret is:
        a message would carry them in the messages cookie (signed, not encrypted)."""
        issued = []
        with transaction.atomic():
            for user in queryset.order_by("username"):
                Token.objects.filter(user=user).delete()
                issued.append({"user": user, "key": Token.objects.create(user=user).key})
                self.log_change(request, user, "Issued a new API token.")
        context = {
            **self.admin_site.each_context(request),
            "title": "New API token" if len(issued) == 1 else "New API tokens",
            "opts": self.opts,
            "rows": issued,
            "changelist_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"),
        }
        response = TemplateResponse(request, "admin/auth/user/api_tokens.html", context)
        add_never_cache_headers(response)
        return response
