"""Row ranges for seating blocks: ``A-J``, ``AA-AZ``, ``A`` or ``1-12``."""

import re
from collections.abc import Callable

MAX_ROWS = 2000
MAX_SEATS_PER_ROW = 2000

_LETTERS = re.compile(r"^[A-Z]{1,3}$")
_DIGITS = re.compile(r"^[0-9]{1,4}$")


def _letters_to_index(letters: str) -> int:
    """Spreadsheet order: A=1 … Z=26, AA=27 …"""
    index = 0
    for char in letters:
        index = index * 26 + (ord(char) - ord("A") + 1)
    return index


def _index_to_letters(index: int) -> str:
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def parse_row_range(text: str) -> list[str]:
    """The row names of a range, in order; ValueError with a readable reason if malformed."""
    cleaned = (text or "").strip().upper().replace("–", "-")
    start, sep, end = cleaned.partition("-")
    start, end = start.strip(), (end.strip() if sep else start.strip())
    if _LETTERS.match(start) and _LETTERS.match(end):
        first, last = _letters_to_index(start), _letters_to_index(end)
        to_name: Callable[[int], str] = _index_to_letters
    elif _DIGITS.match(start) and _DIGITS.match(end):
        first, last = int(start), int(end)
        to_name = str
    else:
        raise ValueError(f"'{text}' is not a row range such as A-J, AA-AZ, A or 1-12.")
    if first > last:
        raise ValueError(f"The row range '{text}' runs backwards.")
    if last - first + 1 > MAX_ROWS:
        raise ValueError(f"The row range '{text}' has more than {MAX_ROWS} rows.")
    return [to_name(i) for i in range(first, last + 1)]


def validate_seats_per_row(count: int) -> int:
    if not 1 <= count <= MAX_SEATS_PER_ROW:
        raise ValueError(f"Seats per row must be between 1 and {MAX_SEATS_PER_ROW}.")
    return count


def seat_label(row: str, number: int) -> str:
    """``A7``; for a numbered row a dash keeps labels apart (row 1 seat 11 is ``1-11``, row 11 seat 1 ``11-1``)."""
    return f"{row}-{number}" if row[-1:].isdigit() else f"{row}{number}"
