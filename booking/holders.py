"""What a holder's name may be, and how any stored text is written into a log line.

A holder is an opaque string (a username, or a box office's ``userId``), but it
is shown in the admin and written into log lines: so it is printable text
(``str.isprintable``: no control or format characters, no line or paragraph
separators, no lone surrogates) of 1 to 150 characters, the length of the
seat's holder columns. The API's serializers, the admin's forms and the
management commands all validate with :func:`validate_holder`.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

#: The length of Seat.locked_by, Seat.booked_by, Booking.holder and a Django username.
HOLDER_MAX_LENGTH = 150


def holder_problem(name: str) -> str | None:
    """Why ``name`` cannot be a holder, or None when it can."""
    if not 1 <= len(name) <= HOLDER_MAX_LENGTH:
        return f"A holder has 1 to {HOLDER_MAX_LENGTH} characters."
    if not name.isprintable():
        bad = next(char for char in name if not char.isprintable())
        return f"A holder has printable characters only (not {ascii(bad)})."
    return None


def validate_holder(name: str) -> None:
    """A Django validator (model forms, DRF fields): ValidationError if ``name`` is no holder."""
    problem = holder_problem(name)
    if problem is not None:
        raise ValidationError(problem, code="invalid_holder")


def loggable(text: object) -> str:
    """``text`` for a log line: printable characters as they are, any other escaped (``\\n``,
    ``\\x1b``, ``\\u2028``), so that a value stored before these rules can never start a forged line."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)
