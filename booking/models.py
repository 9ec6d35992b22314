"""Events, their seats, and the audit trail of every seat change."""

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Now
from django.utils import timezone


def default_hold_seconds() -> int:
    return settings.BOOKING_HOLD_SECONDS


class Event(models.Model):
    name = models.CharField(max_length=200)
    starts_at = models.DateTimeField()
    hold_seconds = models.PositiveIntegerField(
        default=default_hold_seconds,
        help_text="How long a hold lasts before it expires (renewable up to the ceiling).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(hold_seconds__gte=1), name="event_hold_seconds_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({timezone.localtime(self.starts_at):%Y-%m-%d %H:%M})"  # the venue's time


class SeatStatus(models.TextChoices):
    AVAILABLE = "available", "available"
    LOCKED = "locked", "locked"
    BOOKED = "booked", "booked"
    #: Held back by the venue (press, technical, sight line): nobody's, not for sale until unblocked.
    BLOCKED = "blocked", "blocked"


# --- A seat's live status -----------------------------------------------------
#
# The one definition of "an expired hold reads as available": every read
# (selectors, the seat map, the live snapshot, the admin) and every write's rules
# take a seat's status from these, judged on the database's clock (Now()) in the
# statement that reads the seat. ``prefix`` reaches a seat through a relation
# ("seats__" from an event).


def hold_is_live(prefix: str = "") -> Q:
    """A hold that has not run out."""
    return Q(**{f"{prefix}status": SeatStatus.LOCKED, f"{prefix}lock_expires_at__gt": Now()})


def hold_has_expired(prefix: str = "") -> Q:
    """A hold that has run out but is still stored (until the sweep or a lock records its expiry)."""
    return Q(**{f"{prefix}status": SeatStatus.LOCKED, f"{prefix}lock_expires_at__lte": Now()})


def is_booked(prefix: str = "") -> Q:
    return Q(**{f"{prefix}status": SeatStatus.BOOKED})


def is_blocked(prefix: str = "") -> Q:
    return Q(**{f"{prefix}status": SeatStatus.BLOCKED})


def is_available_now(prefix: str = "") -> Q:
    return Q(**{f"{prefix}status": SeatStatus.AVAILABLE}) | hold_has_expired(prefix)


#: The filter for each live status.
LIVE_STATUS_FILTERS = {
    "available": is_available_now,
    "locked": hold_is_live,
    "booked": is_booked,
    "blocked": is_blocked,
}


class SeatQuerySet(models.QuerySet):
    def with_live_status(self) -> "SeatQuerySet":
        """Annotate ``live_status`` (what every reader sees) and ``live_expires_at`` (the
        expiry of a live hold, else None); the stored ``status`` stays as it is."""
        return self.annotate(
            live_status=Case(
                When(hold_is_live(), then=Value(SeatStatus.LOCKED.value)),
                When(is_booked(), then=Value(SeatStatus.BOOKED.value)),
                When(is_blocked(), then=Value(SeatStatus.BLOCKED.value)),
                default=Value(SeatStatus.AVAILABLE.value),
                output_field=models.CharField(),
            ),
            live_expires_at=Case(When(hold_is_live(), then=F("lock_expires_at")), default=None),
        )

    def live(self, status: str) -> "SeatQuerySet":
        """The seats whose live status is ``status`` (indexable conditions, not the CASE)."""
        return self.filter(LIVE_STATUS_FILTERS[status]())

    def expired_holds(self) -> "SeatQuerySet":
        return self.filter(hold_has_expired())


class Seat(models.Model):
    """One seat of one event.

    A row with status ``locked`` whose ``lock_expires_at`` has passed is an
    expired hold: every read shows it available and every lock may take it,
    until the sweep (or the lock that takes it) records its expiry.
    ``locked_at`` is when the current holder first took the hold; renewals
    move only ``lock_expires_at``, never past the ceiling counted from it.
    ``rank`` orders seats for best available (lower is better); the services
    that create seats compute it (booking/seating.py: :func:`seat_ranks`).
    """

    # No index of its own: seat_event_status_idx and the unique (event, label) lead with it,
    # and every index is one more write per seat change.
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="seats", db_index=False)
    label = models.CharField(max_length=32)
    row = models.CharField(max_length=16)
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=SeatStatus.choices, default=SeatStatus.AVAILABLE)
    locked_by = models.CharField(max_length=150, blank=True, default="")
    locked_at = models.DateTimeField(null=True, blank=True)
    lock_expires_at = models.DateTimeField(null=True, blank=True)
    booked_by = models.CharField(max_length=150, blank=True, default="")
    booked_at = models.DateTimeField(null=True, blank=True)
    # The booking a booked seat belongs to; a seat cancelled from it leaves (its history stays
    # with the booking, in the audit rows). Indexed by seat_booking_idx.
    booking = models.ForeignKey(
        "Booking", null=True, blank=True, on_delete=models.RESTRICT, related_name="seats", db_index=False
    )
    section = models.CharField(max_length=64, blank=True, default="", help_text='Part of the venue, e.g. "Balcony".')
    category = models.CharField(
        max_length=32, blank=True, default="", help_text='A price level the shop maps to prices, e.g. "A".'
    )
    accessible = models.BooleanField(default=False, help_text="A wheelchair or companion place.")
    rank = models.PositiveIntegerField(
        default=0, help_text="Best available takes the lowest first: front rows, then the middle of the row."
    )
    block_reason = models.CharField(
        max_length=200, blank=True, default="", help_text="Why a blocked seat is held back."
    )
    version = models.PositiveBigIntegerField(
        default=0,
        editable=False,
        help_text="Bumped by every change; live clients drop a pushed state older than the one they have.",
    )

    objects = SeatQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "label"], name="seat_unique_label_per_event"),
            models.CheckConstraint(condition=Q(status__in=SeatStatus.values), name="seat_status_valid"),
            models.CheckConstraint(
                name="seat_locked_has_holder",
                condition=~Q(status=SeatStatus.LOCKED)
                | (~Q(locked_by="") & Q(locked_at__isnull=False) & Q(lock_expires_at__isnull=False)),
            ),
            models.CheckConstraint(
                name="seat_booked_has_holder",
                condition=~Q(status=SeatStatus.BOOKED) | (~Q(booked_by="") & Q(booked_at__isnull=False)),
            ),
            # A booked seat belongs to exactly one booking, and only a booked seat belongs to one.
            models.CheckConstraint(
                name="seat_booked_has_booking",
                condition=Q(status=SeatStatus.BOOKED, booking__isnull=False)
                | (~Q(status=SeatStatus.BOOKED) & Q(booking__isnull=True)),
            ),
            models.CheckConstraint(
                name="seat_available_has_no_holder",
                condition=~Q(status=SeatStatus.AVAILABLE) | (Q(locked_by="") & Q(booked_by="")),
            ),
            # A blocked seat is nobody's: no holder, no booking, no hold times.
            models.CheckConstraint(
                name="seat_blocked_has_no_holder",
                condition=~Q(status=SeatStatus.BLOCKED)
                | (
                    Q(locked_by="")
                    & Q(booked_by="")
                    & Q(locked_at__isnull=True)
                    & Q(lock_expires_at__isnull=True)
                    & Q(booked_at__isnull=True)
                ),
            ),
            # Only a blocked seat has a reason for it.
            models.CheckConstraint(
                name="seat_block_reason_only_blocked", condition=Q(status=SeatStatus.BLOCKED) | Q(block_reason="")
            ),
        ]
        indexes = [
            # The seat map and per-event counts.
            models.Index(fields=["event", "status"], name="seat_event_status_idx"),
            # The sweep: locked seats by expiry.
            models.Index(
                fields=["lock_expires_at"], name="seat_locked_expiry_idx", condition=Q(status=SeatStatus.LOCKED)
            ),
            # A holder's holds and bookings (/api/me/seats, the hold limit).
            models.Index(fields=["locked_by", "event"], name="seat_holder_idx", condition=Q(status=SeatStatus.LOCKED)),
            models.Index(fields=["booked_by", "event"], name="seat_booker_idx", condition=Q(status=SeatStatus.BOOKED)),
            # A booking's seats.
            models.Index(fields=["booking"], name="seat_booking_idx", condition=Q(booking__isnull=False)),
            # Best available: an event's free seats (and holds that may have run out) by rank,
            # with or without a category (booking/services/best_available.py).
            models.Index(
                fields=["event", "rank"],
                name="seat_best_idx",
                condition=Q(status__in=[SeatStatus.AVAILABLE, SeatStatus.LOCKED]),
            ),
            models.Index(
                fields=["event", "category", "rank"],
                name="seat_best_category_idx",
                condition=Q(status__in=[SeatStatus.AVAILABLE, SeatStatus.LOCKED]),
            ),
            # Best available judges adjacency on whole rows: a row's seats, in number order.
            models.Index(fields=["event", "section", "row", "number"], name="seat_row_idx"),
        ]
        permissions = [("hold_for_others", "Can hold, book and release seats for any holder")]

    def __str__(self) -> str:
        return f"{self.label} ({self.event_id})"


class SeatMapVersion(models.Model):
    """A per-event change counter of the seat map, in a few shards: the seat map's ETag.

    Every seat write adds one to one shard of its event, in its own transaction
    (booking/services/pipeline.py; on PostgreSQL any shard no other writer holds, so
    writers never wait for each other), so the sum over the shards changes with every
    committed change. Not a column of Event, and no foreign key: a sale's writers
    would all queue on that one event row (and behind anyone holding it); here
    only writers whose shard is the same take turns, for the instant before commit.
    """

    #: Shards per event on SQLite: a write's is its lowest seat id modulo this.
    SHARDS = 16

    event = models.ForeignKey(
        Event, on_delete=models.CASCADE, related_name="seat_map_versions", db_index=False, db_constraint=False
    )
    shard = models.PositiveSmallIntegerField()
    version = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "shard"], name="seatmapversion_unique_shard")]

    def __str__(self) -> str:
        return f"{self.event_id}/{self.shard}: {self.version}"


class SeatAction(models.TextChoices):
    LOCKED = "locked", "locked"
    EXTENDED = "extended", "extended"
    UNLOCKED = "unlocked", "unlocked"
    EXPIRED = "expired", "expired"
    BOOKED = "booked", "booked"
    CANCELLED = "cancelled", "cancelled"
    ADMIN_RELEASED = "admin_released", "released by admin"
    ADMIN_BOOKED = "admin_booked", "booked by admin"
    ADMIN_CANCELLED = "admin_cancelled", "booking cancelled by admin"
    BLOCKED = "blocked", "blocked"
    UNBLOCKED = "unblocked", "unblocked"


#: The audit actions that put a seat into a booking, and that take it out again.
BOOKING_ACTIONS = (SeatAction.BOOKED, SeatAction.ADMIN_BOOKED)
CANCEL_ACTIONS = (SeatAction.CANCELLED, SeatAction.ADMIN_CANCELLED)


class SeatEvent(models.Model):
    """One row per seat state change, written in the change's transaction."""

    # Indexed by seatevent_seat_idx and seatevent_event_idx below, which lead with them.
    seat = models.ForeignKey(Seat, on_delete=models.CASCADE, related_name="audit_events", db_index=False)
    # The seat's event, copied for the event's trail (seatevent_event_idx). No database
    # constraint: PostgreSQL checks a foreign key by locking the referenced row (FOR KEY
    # SHARE), and every audit row of a sale names the same event. So every booking's commit
    # took a share of that one row's lock (a new MultiXact each time, as they overlap) and
    # waited behind anyone holding the row; and the sweep checked the key 100 000 times
    # (about an eighth of its time, measured). The seat's key still guards every audit row,
    # and the seat's key its event; deleting an event still deletes its trail (Django's CASCADE).
    event = models.ForeignKey(
        Event, on_delete=models.CASCADE, related_name="audit_events", db_index=False, db_constraint=False
    )
    action = models.CharField(max_length=20, choices=SeatAction.choices)
    holder = models.CharField(max_length=150, blank=True, default="")
    # The booking a "booked" or "cancelled" row is about: a booking's cancelled seats are
    # those with a cancel row for it. Indexed where set (seatevent_booking_idx).
    booking = models.ForeignKey(
        "Booking", null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events", db_index=False
    )
    # Indexed only where set (seatevent_actor_idx): the sweep's expiries have no actor.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["seat", "-created_at"], name="seatevent_seat_idx"),
            models.Index(fields=["event", "-created_at"], name="seatevent_event_idx"),
            models.Index(fields=["holder"], name="seatevent_holder_idx"),
            models.Index(fields=["actor"], name="seatevent_actor_idx", condition=Q(actor__isnull=False)),
            models.Index(fields=["booking"], name="seatevent_booking_idx", condition=Q(booking__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.seat_id} {self.holder}"


class Booking(models.Model):
    """What a confirm creates: the seats one holder booked together, with a reference.

    ``reference`` is 8 characters of Crockford base32 (booking/references.py),
    random, unique, stored upper case. Its seats now are ``seats`` (booked
    seats point to it); those cancelled from it are in its audit rows.
    """

    reference = models.CharField(max_length=8, unique=True)
    # No database constraint, as for the audit rows' event: PostgreSQL checks a foreign key
    # by locking the referenced row (FOR KEY SHARE), and every booking of a sale names the
    # same event: each confirm would queue behind anyone holding that one row. Its seats'
    # keys guard it; deleting an event still deletes its bookings (Django's CASCADE).
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="bookings", db_constraint=False)
    holder = models.CharField(max_length=150)
    order_id = models.CharField(max_length=100, blank=True, default="", help_text="The shop's own id, if it gave one.")
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # A holder's bookings, newest first (/api/me/bookings).
            models.Index(fields=["holder", "-created_at", "-id"], name="booking_holder_idx"),
            # The box office finds a shop's order.
            models.Index(fields=["order_id"], name="booking_order_idx", condition=~Q(order_id="")),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(reference__regex=r"^[0-9A-HJKMNP-TV-Z]{8}$"), name="booking_reference_shape"
            ),
            models.CheckConstraint(condition=~Q(holder=""), name="booking_has_holder"),
        ]

    def __str__(self) -> str:
        return self.reference


class IdempotencyKey(models.Model):
    """A write's ``Idempotency-Key``: claimed before the write runs, its answer kept after.

    Scoped to the caller and the path. A 2xx answer is written in the write's own
    transaction (booking/services/idempotency.py), so a change that committed
    always has its answer here and is never run twice. ``claim`` is the token of
    the attempt that may finish it, until ``lease_expires_at``.
    """

    class State(models.TextChoices):
        RUNNING = "running", "running"
        DONE = "done", "done"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    path = models.CharField(max_length=200)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the request body.")
    state = models.CharField(max_length=10, choices=State.choices)
    claim = models.CharField(max_length=32)
    lease_expires_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField(help_text="Kept until then (BOOKING_IDEMPOTENCY_SECONDS), then purged.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "path", "key"], name="idempotency_key_unique"),
            models.CheckConstraint(
                condition=~Q(state="done") | Q(status_code__isnull=False), name="idempotency_done_has_answer"
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.path} {self.key}"


# --- Webhooks -------------------------------------------------------------------


class WebhookEventType(models.TextChoices):
    HOLD_CREATED = "hold.created", "hold.created"
    HOLD_RELEASED = "hold.released", "hold.released"
    HOLD_EXPIRED = "hold.expired", "hold.expired"
    BOOKING_CONFIRMED = "booking.confirmed", "booking.confirmed"
    BOOKING_CANCELLED = "booking.cancelled", "booking.cancelled"
    TEST = "webhook.test", "webhook.test"


class WebhookEndpoint(models.Model):
    """An integrator's receiver: where messages go, which types, and the secrets that sign them.

    During a rotation the previous secret signs too (a second signature in
    ``webhook-signature``) until ``previous_secret_expires_at``, so a receiver
    can switch over without missing a message.
    """

    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True, default="")
    event_types = models.JSONField(
        default=list, blank=True, help_text="The types it receives; empty for all (but webhook.test, sent on demand)."
    )
    active = models.BooleanField(default=True)
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, default="", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    #: Since when every attempt to it has failed (None while it answers); 5 days of it disables it.
    failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=200, blank=True, default="", editable=False)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url

    def receives(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookMessage(models.Model):
    """The outbox: one message per reported change, written in the change's own transaction."""

    # Unique by a constraint, not unique=True: that also builds a LIKE index (PostgreSQL's
    # varchar_pattern_ops), a second index for every message to write and nothing to read.
    msg_id = models.CharField(max_length=40, help_text="The webhook-id: the same on every attempt.")
    type = models.CharField(max_length=40, choices=WebhookEventType.choices)
    payload = models.JSONField(help_text='{"type", "timestamp", "data"}, as sent.')
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["msg_id"], name="webhookmessage_msg_id_unique")]
        indexes = [models.Index(fields=["created_at"], name="webhookmessage_created_idx")]

    def __str__(self) -> str:
        return f"{self.type} {self.msg_id}"


class WebhookDelivery(models.Model):
    """One message to one endpoint: its attempts, and when the next one is due."""

    class State(models.TextChoices):
        PENDING = "pending", "pending"
        DELIVERED = "delivered", "delivered"
        FAILED = "failed", "failed"

    # No database constraint: a process writes deliveries for the endpoints it knew a moment ago
    # (BOOKING_WEBHOOK_ENDPOINTS_CACHE_SECONDS), and a booking must never fail because one of
    # them was deleted meanwhile; an attempt for a vanished endpoint drops its delivery.
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_constraint=False
    )
    message = models.ForeignKey(WebhookMessage, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    #: An attempt in flight holds the delivery until then; a worker killed mid-attempt lets it go.
    leased_until = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    response_excerpt = models.CharField(max_length=500, blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "endpoint"], name="webhookdelivery_once_per_endpoint"),
        ]
        indexes = [
            # What is due: the beat task's query.
            models.Index(fields=["next_attempt_at"], name="webhookdelivery_due_idx", condition=Q(state="pending")),
        ]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.message.type} {self.message.msg_id} to {self.endpoint.url}"
