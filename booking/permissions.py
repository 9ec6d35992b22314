"""Who may act as which holder."""

from .errors import Forbidden

HOLD_FOR_OTHERS = "booking.hold_for_others"


def resolve_holder(user, user_id: str | None) -> str:
    """The holder a caller acts as: itself, or any ``userId`` with ``booking.hold_for_others``."""
    if user_id is None or user_id == user.get_username():
        return user.get_username()
    if user.has_perm(HOLD_FOR_OTHERS):
        return user_id
    raise Forbidden(f"You act as '{user.get_username()}' and may not act for '{user_id}'.")


def bookings_scope(user) -> str | None:
    """Whose bookings a caller may see and cancel: None (anybody's, the box office) with
    ``booking.hold_for_others``, else its own."""
    return None if user.has_perm(HOLD_FOR_OTHERS) else user.get_username()
