"""Input validation and the documented output shapes (camelCase, as the spec says)."""

from rest_framework import serializers

from .. import conf
from ..conf import MAX_IDS_PER_REQUEST
from ..holders import HOLDER_MAX_LENGTH, validate_holder
from ..models import SeatStatus

MAX_ID = 2**63 - 1


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: no strings, floats or booleans."""

    default_error_messages = {"invalid": "A seat id must be a JSON integer."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    default_error_messages = {"invalid": "Must be a JSON string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be a JSON boolean."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


def _seat_id_field(**kwargs) -> StrictIntegerField:
    return StrictIntegerField(min_value=1, max_value=MAX_ID, **kwargs)


def _holder_field() -> StrictCharField:
    return StrictCharField(
        required=False,
        max_length=HOLDER_MAX_LENGTH,
        allow_blank=False,
        validators=[validate_holder],
        help_text=f"The holder (1 to {HOLDER_MAX_LENGTH} printable characters); must be the caller's username "
        "unless the caller may hold for others.",
    )


class SeatIdsSerializer(serializers.Serializer):
    """``seatId`` or ``seatIds`` (no duplicates), put together in ``seat_ids``."""

    seatId = _seat_id_field(required=False, help_text="One seat's id.")
    seatIds = serializers.ListField(
        child=_seat_id_field(),
        required=False,
        allow_empty=False,
        max_length=MAX_IDS_PER_REQUEST,
        help_text=f"Several seats' ids (1 to {MAX_IDS_PER_REQUEST}, no duplicates): all or none.",
    )

    def validate(self, attrs):
        has_one, has_many = "seatId" in attrs, "seatIds" in attrs
        if has_one == has_many:
            raise serializers.ValidationError("Give exactly one of seatId or seatIds.")
        ids = [attrs["seatId"]] if has_one else attrs["seatIds"]
        if len(set(ids)) != len(ids):
            raise serializers.ValidationError("seatIds has duplicates.")
        attrs["seat_ids"] = ids
        return attrs


class SeatsRequestSerializer(SeatIdsSerializer):
    """Body of lock, confirm and unlock: ``seatId`` or ``seatIds``, and optionally ``userId``."""

    userId = _holder_field()


class BestAvailableRequestSerializer(serializers.Serializer):
    """Lock's second body: the best ``quantity`` free seats of ``event`` (booking/seat_choice.py)."""

    event = _seat_id_field(help_text="The event's id.")
    quantity = StrictIntegerField(min_value=1, help_text="How many seats, 1 to BOOKING_MAX_HOLDS (10): all or none.")
    category = StrictCharField(
        required=False, max_length=32, allow_blank=True, help_text="Only seats of this category (price level)."
    )
    section = StrictCharField(required=False, max_length=64, allow_blank=True, help_text="Only seats of this section.")
    together = StrictBooleanField(
        required=False,
        default=True,
        help_text="Consecutive numbers in one row of one section (a gap in the numbers is an aisle). Default true.",
    )
    accessible = StrictBooleanField(
        required=False,
        default=False,
        help_text="True: the seats include at least one accessible place (the rest its companions). "
        "False (default): no accessible place is given.",
    )
    userId = _holder_field()

    def validate_quantity(self, quantity: int) -> int:
        if quantity > conf.max_holds():
            raise serializers.ValidationError(f"At most {conf.max_holds()} seats per request (BOOKING_MAX_HOLDS).")
        return quantity

    def validate(self, attrs):
        if {"seatId", "seatIds"} & set(self.initial_data):
            raise serializers.ValidationError("Give seat ids or event and quantity, not both.")
        return attrs


class BlockRequestSerializer(SeatIdsSerializer):
    """Body of block and unblock: ``seatId`` or ``seatIds``, and (block) a ``reason``."""

    reason = StrictCharField(
        required=False,
        max_length=200,
        allow_blank=True,
        help_text="Block only: why the seats are held back (press, technical, sight line); kept, never shown "
        "on the public map.",
    )


class ConfirmRequestSerializer(SeatsRequestSerializer):
    """Body of confirm: the seats (of one event), and optionally the shop's ``orderId``."""

    orderId = StrictCharField(
        required=False,
        min_length=1,
        max_length=100,
        allow_blank=False,
        help_text="The shop's own id for this order (1 to 100 characters), kept on the booking.",
    )


class CancelRequestSerializer(serializers.Serializer):
    """Body of a booking's cancel: ``{}`` for the whole booking, or ``seatIds`` for some of its seats."""

    seatIds = serializers.ListField(
        child=_seat_id_field(),
        required=False,
        allow_empty=False,
        max_length=MAX_IDS_PER_REQUEST,
        help_text=f"Some of the booking's seats (1 to {MAX_IDS_PER_REQUEST}, no duplicates); "
        "without it, every seat it has.",
    )

    def validate_seatIds(self, ids):
        if len(set(ids)) != len(ids):
            raise serializers.ValidationError("seatIds has duplicates.")
        return ids


class SeatsQuerySerializer(serializers.Serializer):
    event = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)
    status = serializers.ChoiceField(required=False, choices=SeatStatus.values)


class HolderQuerySerializer(serializers.Serializer):
    userId = serializers.CharField(
        required=False, max_length=HOLDER_MAX_LENGTH, allow_blank=False, validators=[validate_holder]
    )


# --- Output shapes, for the schema ---------------------------------------------


class SeatSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event = serializers.IntegerField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    section = serializers.CharField(help_text='Part of the venue ("" when the venue has none).')
    row = serializers.CharField()
    number = serializers.IntegerField()
    category = serializers.CharField(help_text='Price level ("" when none).')
    accessible = serializers.BooleanField(help_text="A wheelchair or companion place.")
    status = serializers.ChoiceField(choices=SeatStatus.values)
    lockExpiresAt = serializers.DateTimeField(allow_null=True)
    version = serializers.IntegerField(
        help_text="Grows with every change of the seat: of two states of one seat, the higher version is newer."
    )


class SeatsResultSerializer(serializers.Serializer):
    holder = serializers.CharField()
    lockExpiresAt = serializers.DateTimeField(required=False, help_text="Lock only: the earliest expiry.")
    expiresInSeconds = serializers.FloatField(required=False, help_text="Lock only: seconds left, database clock.")
    seats = SeatSerializer(many=True)


class BlockResultSerializer(serializers.Serializer):
    seats = SeatSerializer(many=True)


class HolderSeatsSerializer(serializers.Serializer):
    holder = serializers.CharField()
    seats = SeatSerializer(many=True)


class StatusCountsSerializer(serializers.Serializer):
    available = serializers.IntegerField()
    locked = serializers.IntegerField()
    booked = serializers.IntegerField()
    blocked = serializers.IntegerField()


class EventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    startsAt = serializers.DateTimeField()
    holdSeconds = serializers.IntegerField()


class EventDetailSerializer(EventSerializer):
    seatCount = serializers.IntegerField()
    counts = StatusCountsSerializer()


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()
    seats = serializers.ListField(child=serializers.IntegerField(), required=False)


class HealthSerializer(serializers.Serializer):
    _STATE = "`ok`, `down`, or `local` (in this process or on this machine: nothing to reach)."
    status = serializers.CharField(help_text="`ok` while the database answers, else `unavailable`.")
    database = serializers.CharField(help_text="`ok` or `unreachable`: decides 200 or 503.")
    cache = serializers.CharField(help_text=f"The rate limits' cache: {_STATE}")
    channelLayer = serializers.CharField(help_text=f"The live updates' channel layer: {_STATE}")
    broker = serializers.CharField(help_text=f"The Celery broker (webhooks): {_STATE}")


class BookingSerializer(serializers.Serializer):
    reference = serializers.CharField(help_text="8 characters of Crockford base32; matched case-insensitively.")
    event = serializers.IntegerField()
    holder = serializers.CharField()
    status = serializers.ChoiceField(choices=["confirmed", "cancelled"], help_text="confirmed while a seat is booked")
    orderId = serializers.CharField(allow_null=True)
    createdAt = serializers.DateTimeField()
    seats = SeatSerializer(many=True, help_text="Its seats now.")
    cancelledSeats = SeatSerializer(many=True, help_text="Seats cancelled from it, as they are now.")


class ConfirmResultSerializer(SeatsResultSerializer):
    booking = BookingSerializer()


class CancelResultSerializer(serializers.Serializer):
    holder = serializers.CharField()
    seats = SeatSerializer(many=True, help_text="The seats this cancel made available.")
    booking = BookingSerializer()


class BookingPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = BookingSerializer(many=True)
