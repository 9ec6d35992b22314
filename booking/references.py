"""Booking references: 8 characters of Crockford base32, 40 random bits from ``secrets``.

Crockford's alphabet has no I, L, O or U, so a reference read aloud or typed
from a ticket survives the usual slips: input is matched case-insensitively,
``O`` reads as zero, ``I`` and ``L`` as one, and hyphens and spaces are ignored.
"""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 8  # 8 x 5 bits = 40 bits: a guess hits one of a million bookings once in a million tries

_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_reference() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def normalize_reference(text: str) -> str | None:
    """The stored form of a reference as a person typed it, or None if it cannot be one."""
    cleaned = text.replace("-", "").replace(" ", "").upper().translate(_READ_AS)
    if len(cleaned) != LENGTH or any(char not in ALPHABET for char in cleaned):
        return None
    return cleaned
