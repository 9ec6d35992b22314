"""Thin views: validate input, call one service or selector, render the result."""

from collections.abc import Callable

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from ..errors import BookingNotFound, Forbidden
from ..health import health
from ..permissions import HOLD_FOR_OTHERS, bookings_scope, resolve_holder
from ..references import normalize_reference
from ..representations import BOOKING_COLUMNS
from .exceptions import error_body
from .idempotency import IdempotentWrite
from .seat_map import seat_map_response
from .serializers import (
    BestAvailableRequestSerializer,
    BlockRequestSerializer,
    BlockResultSerializer,
    BookingPageSerializer,
    BookingSerializer,
    CancelRequestSerializer,
    CancelResultSerializer,
    ConfirmRequestSerializer,
    ConfirmResultSerializer,
    ErrorSerializer,
    EventDetailSerializer,
    EventSerializer,
    HealthSerializer,
    HolderQuerySerializer,
    HolderSeatsSerializer,
    SeatSerializer,
    SeatsQuerySerializer,
    SeatsRequestSerializer,
    SeatsResultSerializer,
)


def _error(description: str, *codes: str) -> OpenApiResponse:
    return OpenApiResponse(
        ErrorSerializer,
        description=f"{description} Codes: {', '.join(f'`{c}`' for c in codes)}.",
        examples=[
            OpenApiExample(code, value=error_body(code, "…", [1] if code.startswith("seat") else None))
            for code in codes
        ],
    )


_COMMON_WRITE_ERRORS = {
    400: _error("Malformed JSON, missing or wrong-typed ids, empty, duplicated or over-long lists.", "invalid"),
    401: _error("No valid credentials.", "not_authenticated"),
    403: _error("Acting for another holder without `booking.hold_for_others`.", "forbidden"),
    404: _error("A seat id does not exist; `seats` names them.", "seat_not_found"),
    429: _error("Too many requests; see `Retry-After`.", "throttled"),
    503: _error("A row lock was not granted in time; retry after `Retry-After` seconds.", "busy"),
}


#: Every write's Idempotency-Key header, and the header of a replayed answer.
_IDEMPOTENCY_PARAMETERS = [
    OpenApiParameter(
        "Idempotency-Key",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        description="1 to 255 printable ASCII characters, scoped to the caller and the path. The first request "
        "runs; a repeat with the same body within `BOOKING_IDEMPOTENCY_SECONDS` (a day) gets the same status and "
        "body and runs nothing. A 2xx answer is kept in the write's own transaction; 429, 503 and 5xx answers "
        "are not kept (a retry runs).",
    ),
    OpenApiParameter(
        "Idempotent-Replayed",
        OpenApiTypes.STR,
        OpenApiParameter.HEADER,
        response=[200, 400, 403, 404, 409, 422],  # the answers a repeat can replay
        enum=["true"],
        description="`true` on an answer replayed for a repeated Idempotency-Key.",
    ),
]


def _idempotency_errors(conflict: OpenApiResponse) -> dict[int, OpenApiResponse]:
    """A write's 409 with `idempotency_key_in_use` added, and the 422 of a reused key."""
    return {
        409: OpenApiResponse(
            conflict.response,
            description=f"{conflict.description} Also `idempotency_key_in_use`: a request with this "
            "Idempotency-Key still runs; retry after `Retry-After` seconds.",
            examples=[
                *conflict.examples,
                OpenApiExample("idempotency_key_in_use", value=error_body("idempotency_key_in_use", "…")),
            ],
        ),
        422: _error("The Idempotency-Key was used with another body.", "idempotency_key_mismatch"),
    }


class SeatsWriteView(IdempotentWrite):
    """Shared shape of lock, confirm and unlock; each subclass names its service."""

    permission_classes = [IsAuthenticated]
    service: Callable[..., services.SeatsResult]
    request_serializer: type[SeatsRequestSerializer] = SeatsRequestSerializer

    def post(self, request):
        return self.run_idempotently(request, lambda: self.write(request))

    def answer_body(self, result: services.SeatsResult) -> dict:
        return seats_result_body(result)

    def write(self, request) -> Response:
        data = self.request_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        holder = resolve_holder(request.user, data.validated_data.get("userId"))
        result = type(self).service(
            seat_ids=data.validated_data["seat_ids"], holder=holder, actor=request.user, **self.service_options(data)
        )
        return Response(seats_result_body(result))

    def service_options(self, data: SeatsRequestSerializer) -> dict:
        """The service's arguments beyond seats, holder and actor."""
        return {}


def seats_result_body(result: services.SeatsResult) -> dict:
    """A lock's, confirm's or unlock's answer."""
    body: dict = {"holder": result.holder}
    if result.lock_expires_at is not None:
        body["lockExpiresAt"] = result.lock_expires_at
        body["expiresInSeconds"] = result.expires_in_seconds
    body["seats"] = result.seats
    if result.booking is not None:
        body["booking"] = result.booking
    return body


def _write_schema(
    summary: str,
    description: str,
    conflicts: dict[str, str],
    *,
    request=SeatsRequestSerializer,
    answer=None,
    extra_examples=(),
    examples=None,
):
    return extend_schema(
        summary=summary,
        description=description,
        request=request,
        responses={
            200: answer or SeatsResultSerializer,
            **_COMMON_WRITE_ERRORS,
            **_idempotency_errors(_error(" ".join(conflicts.values()), *conflicts)),
        },
        parameters=_IDEMPOTENCY_PARAMETERS,
        examples=examples
        or [
            OpenApiExample("One seat", value={"seatId": 12}, request_only=True),
            OpenApiExample(
                "Several seats for a holder", value={"seatIds": [12, 13], "userId": "alice"}, request_only=True
            ),
            *extra_examples,
        ],
        tags=["holds"],
    )


_LOCK_REQUEST = PolymorphicProxySerializer(
    component_name="LockRequest",
    serializers=[SeatsRequestSerializer, BestAvailableRequestSerializer],
    resource_type_field_name=None,
)


@_write_schema(
    "Hold seats: named, or the best available",
    "Hold every seat for the holder, or none. Named seats (`seatId` or `seatIds`): a free seat, an "
    "expired hold, or the holder's own hold (renewed to a full hold time, never past the ceiling) may be "
    "taken. Best available (`event` and `quantity`, optionally `category`, `section`, `together`, "
    "`accessible`): the service picks the lowest-rank free seats that fit (together: consecutive numbers "
    "in one row of one section; no single free seat stranded beside them when another block of that row "
    "avoids it; accessible places only when `accessible` is true, and then at least one) and holds them "
    "the same way; concurrent requests never pick the same seat and never wait on each other.",
    {
        "seat_booked": "`seat_booked`: a seat is booked.",
        "seat_blocked": "`seat_blocked`: a seat is held back by the venue.",
        "seat_locked": "`seat_locked`: someone else holds a seat.",
        "too_many_holds": "`too_many_holds`: over the per-event hold limit.",
        "no_seats_available": "`no_seats_available`: best available found no seats that fit.",
    },
    request=_LOCK_REQUEST,
    extra_examples=[
        OpenApiExample(
            "Best available",
            value={"event": 1, "quantity": 2, "category": "A", "together": True},
            request_only=True,
        ),
    ],
)
class LockView(SeatsWriteView):
    service = staticmethod(services.seats_lock)

    def write(self, request) -> Response:
        if isinstance(request.data, dict) and ("event" in request.data or "quantity" in request.data):
            data = BestAvailableRequestSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            wanted = data.validated_data
            result = services.seats_lock_best(
                event_id=wanted["event"],
                quantity=wanted["quantity"],
                holder=resolve_holder(request.user, wanted.get("userId")),
                actor=request.user,
                category=wanted.get("category"),
                section=wanted.get("section"),
                together=wanted["together"],
                accessible=wanted["accessible"],
            )
            return Response(seats_result_body(result))
        return super().write(request)


@_write_schema(
    "Book held seats",
    "Book every seat the holder holds unexpired, or none, as one booking with a reference; the "
    "seats must be of one event (else 400 `invalid`). Seats the holder already booked count as "
    "done, so a retry gets the same answer and the same booking.",
    {
        "seat_booked": "`seat_booked`: someone else booked a seat.",
        "hold_expired": "`hold_expired`: the holder's hold ran out.",
        "not_locked_by_you": "`not_locked_by_you`: the holder does not hold a seat.",
    },
    request=ConfirmRequestSerializer,
    answer=ConfirmResultSerializer,
)
class ConfirmView(SeatsWriteView):
    service = staticmethod(services.seats_confirm)
    request_serializer = ConfirmRequestSerializer

    def service_options(self, data: SeatsRequestSerializer) -> dict:
        return {"order_id": data.validated_data.get("orderId")}


@_write_schema(
    "Release held seats",
    "Release the holder's holds, all or none. Seats nobody holds are left as they are (200).",
    {
        "seat_booked": "`seat_booked`: a seat is booked.",
        "not_locked_by_you": "`not_locked_by_you`: someone else holds a seat.",
    },
)
class UnlockView(SeatsWriteView):
    service = staticmethod(services.seats_unlock)


class BlockWriteView(IdempotentWrite):
    """Block and unblock: the box office's (permission ``booking.hold_for_others``)."""

    permission_classes = [IsAuthenticated]

    def post(self, request):
        return self.run_idempotently(request, lambda: self.write(request))

    def answer_body(self, result: services.BlockResult) -> dict:
        return {"seats": result.seats}

    def write(self, request) -> Response:
        if not request.user.has_perm(HOLD_FOR_OTHERS):
            raise Forbidden("Blocking and unblocking seats needs the permission booking.hold_for_others.")
        data = BlockRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(self.answer_body(self.run(data.validated_data, request.user)))

    def run(self, data: dict, actor) -> services.BlockResult:
        raise NotImplementedError


_BLOCK_EXAMPLES = [
    OpenApiExample("One seat", value={"seatId": 12, "reason": "camera platform"}, request_only=True),
    OpenApiExample("Several seats", value={"seatIds": [12, 13], "reason": "press"}, request_only=True),
]


@_write_schema(
    "Hold seats back from sale (box office)",
    "Block every seat, or none: free seats and expired holds. Needs `booking.hold_for_others` (else 403). "
    "A blocked seat is nobody's; a lock of it answers 409 `seat_blocked`. Seats blocked already stay so.",
    {
        "seat_booked": "`seat_booked`: a seat is booked.",
        "seat_locked": "`seat_locked`: someone holds a seat.",
    },
    request=BlockRequestSerializer,
    answer=BlockResultSerializer,
    examples=_BLOCK_EXAMPLES,
)
class BlockView(BlockWriteView):
    def run(self, data: dict, actor) -> services.BlockResult:
        return services.seats_block(seat_ids=data["seat_ids"], reason=data.get("reason", ""), actor=actor)


@_write_schema(
    "Put blocked seats back on sale (box office)",
    "Every blocked seat among them becomes available; other seats are left as they are (200). "
    "Needs `booking.hold_for_others` (else 403).",
    {},
    request=BlockRequestSerializer,
    answer=BlockResultSerializer,
    examples=_BLOCK_EXAMPLES[:1],
)
class UnblockView(BlockWriteView):
    def run(self, data: dict, actor) -> services.BlockResult:
        return services.seats_unblock(seat_ids=data["seat_ids"], actor=actor)


_READ_ERRORS = {
    400: _error("A query parameter is malformed.", "invalid"),
    429: _error("Too many requests.", "throttled"),
    503: _error("The database is unavailable.", "busy"),
}


class SeatListView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        summary="List seats",
        parameters=[SeatsQuerySerializer],
        responses={200: SeatSerializer(many=True), **_READ_ERRORS},
        tags=["seats"],
    )
    def get(self, request):
        query = SeatsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        event_id = query.validated_data.get("event")
        services.holds_release_expired_if_any(event_id=event_id)
        return Response(selectors.seats_list(event_id=event_id, status=query.validated_data.get("status")))


class EventListView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(summary="List events", responses={200: EventSerializer(many=True), **_READ_ERRORS}, tags=["events"])
    def get(self, request):
        return Response(selectors.event_list())


class EventDetailView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        summary="One event, with its seat counts by status",
        responses={200: EventDetailSerializer, 404: _error("No such event.", "not_found"), **_READ_ERRORS},
        tags=["events"],
    )
    def get(self, request, pk: int):
        services.holds_release_expired_if_any(event_id=pk)
        event = selectors.event_detail(event_id=pk)
        if event is None:
            return Response(error_body("not_found", f"No event {pk}."), status=404)
        return Response(event)


class EventSeatsView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        summary="The event's seat map: every seat in one response",
        description="With an `ETag` that changes with every change of a seat of the event (an expiry by "
        "time too): a request with `If-None-Match` of the current tag gets 304 and no body. Gzipped for a "
        "client that sends `Accept-Encoding: gzip`.",
        responses={
            200: SeatSerializer(many=True),
            304: OpenApiResponse(description="Not modified: the tag in `If-None-Match` is current."),
            404: _error("No such event.", "not_found"),
            **_READ_ERRORS,
        },
        tags=["events"],
    )
    def get(self, request, pk: int):
        # With an ETag: If-None-Match gets 304 after one query; bodies kept and gzipped (seat_map.py).
        response = seat_map_response(request, pk)
        if response is None:
            return Response(error_body("not_found", f"No event {pk}."), status=404)
        return response


class MySeatsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="The caller's unexpired holds and bookings",
        description="With `booking.hold_for_others`, `?userId=` names another holder.",
        parameters=[HolderQuerySerializer],
        responses={
            200: HolderSeatsSerializer,
            401: _error("No valid credentials.", "not_authenticated"),
            403: _error("Asking for another holder without the permission.", "forbidden"),
            **_READ_ERRORS,
        },
        tags=["holds"],
    )
    def get(self, request):
        query = HolderQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        holder = resolve_holder(request.user, query.validated_data.get("userId"))
        return Response({"holder": holder, "seats": selectors.holder_seats(holder=holder)})


# --- Bookings -------------------------------------------------------------------

_BOOKING_NOT_FOUND = _error(
    "No booking with this reference that the caller may see (its holder, or `booking.hold_for_others`).",
    "booking_not_found",
)


def _booking_reference(text: str) -> str:
    """The stored form of a reference from the URL (any case, O for 0, I or L for 1)."""
    reference = normalize_reference(text)
    if reference is None:
        raise BookingNotFound(f"No booking {text}.")
    return reference


class BookingDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="One booking",
        description="Its holder sees it, and a caller with `booking.hold_for_others`; anyone else gets 404.",
        responses={
            200: BookingSerializer,
            401: _error("No valid credentials.", "not_authenticated"),
            404: _BOOKING_NOT_FOUND,
            **_READ_ERRORS,
        },
        tags=["bookings"],
    )
    def get(self, request, reference: str):
        booking = selectors.booking_detail(reference=_booking_reference(reference), holder=bookings_scope(request.user))
        if booking is None:
            raise BookingNotFound(f"No booking {reference}.")
        return Response(booking)


class BookingPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 20
    page_size_query_param = "pageSize"
    max_page_size = 100


class MyBookingsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="The caller's bookings, newest first",
        description="Cursor-paginated: follow `next`. With `booking.hold_for_others`, `?userId=` names another "
        "holder. `?pageSize=` from 1 to 100 (20).",
        parameters=[HolderQuerySerializer],
        responses={
            200: BookingPageSerializer,
            401: _error("No valid credentials.", "not_authenticated"),
            403: _error("Asking for another holder without the permission.", "forbidden"),
            **_READ_ERRORS,
        },
        tags=["bookings"],
    )
    def get(self, request):
        query = HolderQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        holder = resolve_holder(request.user, query.validated_data.get("userId"))
        paginator = BookingPagination()
        page = paginator.paginate_queryset(selectors.holder_bookings(holder=holder), request, view=self)
        rows = [{column: getattr(booking, column) for column in BOOKING_COLUMNS} for booking in page or []]
        return paginator.get_paginated_response(selectors.bookings_with_seats(rows))


class BookingCancelView(IdempotentWrite):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Cancel a booking, or some of its seats",
        description="Each cancelled seat is available at once. The holder may cancel until "
        "`BOOKING_CANCEL_CUTOFF_SECONDS` before the event starts; a caller with `booking.hold_for_others` "
        "at any time. All or none.",
        request=CancelRequestSerializer,
        responses={
            200: CancelResultSerializer,
            400: _error("Malformed JSON, wrong-typed, empty, duplicated or over-long seatIds.", "invalid"),
            401: _error("No valid credentials.", "not_authenticated"),
            404: _BOOKING_NOT_FOUND,
            **_idempotency_errors(
                _error(
                    "`seat_not_in_booking`: a seat was never part of this booking (`seats` names them); "
                    "`booking_cancelled`: nothing left to cancel; `cancel_window_closed`: too close to the event.",
                    "seat_not_in_booking",
                    "booking_cancelled",
                    "cancel_window_closed",
                )
            ),
            429: _error("Too many requests; see `Retry-After`.", "throttled"),
            503: _error("A row lock was not granted in time; retry after `Retry-After` seconds.", "busy"),
        },
        parameters=_IDEMPOTENCY_PARAMETERS,
        examples=[
            OpenApiExample("The whole booking", value={}, request_only=True),
            OpenApiExample("Some seats", value={"seatIds": [12]}, request_only=True),
        ],
        tags=["bookings"],
    )
    def post(self, request, reference: str):
        return self.run_idempotently(request, lambda: self.write(request, reference))

    def answer_body(self, result: services.BookingResult) -> dict:
        return {"holder": result.holder, "seats": result.seats, "booking": result.booking}

    def write(self, request, reference: str) -> Response:
        data = CancelRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.booking_cancel(
            reference=_booking_reference(reference),
            holder=bookings_scope(request.user),
            seat_ids=data.validated_data.get("seatIds"),
            actor=request.user,
        )
        return Response(self.answer_body(result))


class HealthView(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []

    @extend_schema(
        summary="Health: 200 when the database answers; the other dependencies' states listed",
        responses={
            200: HealthSerializer,
            503: OpenApiResponse(HealthSerializer, description="The database does not answer."),
        },
        tags=["health"],
    )
    def get(self, request):
        status, report = health()
        return Response(report, status=status, headers={"Retry-After": "5"} if status == 503 else None)
