"""Every change of a seat goes through a function here, one module per concern.

Each write follows the steps of :mod:`booking.services.pipeline`: its own
``transaction.atomic``, row locks in id order, the rules on the database's
clock under those locks, the ORM's writes with their audit rows, and the live
push after commit. The functions take plain arguments, raise
:mod:`booking.errors`, and know nothing of HTTP.
"""

from .admin_actions import (
    ADMIN_CHUNK,
    AdminResult,
    seats_admin_block,
    seats_admin_book,
    seats_admin_cancel,
    seats_admin_release,
    seats_admin_unblock,
)
from .best_available import seats_lock_best
from .blocks import BlockResult, seats_block, seats_unblock
from .bookings import BookingResult, booking_cancel
from .events import event_create_with_seats, seat_maps_changed, seats_add_block
from .expiry import holds_release_expired, holds_release_expired_if_any
from .holds import SeatsResult, seats_confirm, seats_lock, seats_unlock

__all__ = [
    "ADMIN_CHUNK",
    "AdminResult",
    "BlockResult",
    "BookingResult",
    "booking_cancel",
    "SeatsResult",
    "event_create_with_seats",
    "holds_release_expired",
    "holds_release_expired_if_any",
    "seat_maps_changed",
    "seats_add_block",
    "seats_admin_book",
    "seats_admin_cancel",
    "seats_admin_block",
    "seats_admin_release",
    "seats_admin_unblock",
    "seats_block",
    "seats_confirm",
    "seats_lock",
    "seats_lock_best",
    "seats_unblock",
    "seats_unlock",
]
