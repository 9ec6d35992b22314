"""Domain errors raised by the services; the API maps each to a status and code."""


class BookingError(Exception):
    code = "error"
    status = 400
    default_detail = "The request could not be carried out."
    #: Seconds a client should wait before it retries (a ``Retry-After`` header), if any.
    retry_after: int | None = None

    def __init__(self, detail: str | None = None, *, seats: list[int] | None = None):
        self.detail = detail or self.default_detail
        self.seats = seats
        super().__init__(self.detail)


class InvalidRequest(BookingError):
    code, status = "invalid", 400
    default_detail = "The request is malformed."


class Forbidden(BookingError):
    code, status = "forbidden", 403
    default_detail = "You may not act for another holder."


class SeatNotFound(BookingError):
    code, status = "seat_not_found", 404
    default_detail = "No such seat."


class SeatBooked(BookingError):
    code, status = "seat_booked", 409
    default_detail = "The seat is already booked."


class SeatLocked(BookingError):
    code, status = "seat_locked", 409
    default_detail = "The seat is held by someone else."


class SeatBlocked(BookingError):
    code, status = "seat_blocked", 409
    default_detail = "The seat is held back by the venue and not for sale."


class NoSeatsAvailable(BookingError):
    code, status = "no_seats_available", 409
    default_detail = "No free seats fit this request."


class NotLockedByYou(BookingError):
    code, status = "not_locked_by_you", 409
    default_detail = "You do not hold this seat."


class HoldExpired(BookingError):
    code, status = "hold_expired", 409
    default_detail = "Your hold on this seat has expired."


class TooManyHolds(BookingError):
    code, status = "too_many_holds", 409
    default_detail = "This would exceed the number of seats one holder may hold per event."


class Busy(BookingError):
    code, status = "busy", 503
    default_detail = "The seats are busy; retry shortly."
    retry_after = 1


class BookingNotFound(BookingError):
    code, status = "booking_not_found", 404
    default_detail = "No such booking."


class SeatNotInBooking(BookingError):
    code, status = "seat_not_in_booking", 409
    default_detail = "The seat is not part of this booking."


class BookingCancelled(BookingError):
    code, status = "booking_cancelled", 409
    default_detail = "Nothing is left to cancel in this booking."


class CancelWindowClosed(BookingError):
    code, status = "cancel_window_closed", 409
    default_detail = "This booking can no longer be cancelled: the event starts too soon."


class IdempotencyKeyMismatch(BookingError):
    code, status = "idempotency_key_mismatch", 422
    default_detail = "This Idempotency-Key was used with another request body."


class IdempotencyKeyInUse(BookingError):
    code, status = "idempotency_key_in_use", 409
    default_detail = "A request with this Idempotency-Key is still running; retry shortly."

    def __init__(self, detail: str | None = None, *, retry_after: int = 1):
        super().__init__(detail)
        self.retry_after = retry_after


class IdempotencyClaimLost(BookingError):
    """The attempt's claim on its key was taken over (it ran past its lease): it must not commit."""

    code, status = "idempotency_key_in_use", 409
    default_detail = "This request ran too long and a retry with the same Idempotency-Key took over."
    retry_after = 1
