"""Row ranges for seating blocks: ``A-J``, ``AA-AZ``, ``A`` or ``1-12``."""

import re
from collections.abc import Callable, Sequence

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


# --- Rank: the default order of best available ------------------------------------
#
# Lower is better: front rows first, then nearest the middle of the row. A row's
# position weighs RANK_ROW_STEP, more than any distance from the middle (counted in
# half seats, so a row with an even count has two equal middles and stays integer).

RANK_ROW_STEP = 10_000


def row_order_key(row: str) -> tuple[int, int, str]:
    """The front-to-back order of row names: 1, 2 … 10; A … Z, AA …; anything else by its text."""
    name = row.strip().upper()
    if name.isdigit():
        return (0, int(name), "")
    if name.isalpha() and name.isascii():
        return (1, _letters_to_index(name), "")
    return (2, 0, name)


def seat_rank(row_position: int, number: int, first_number: int, last_number: int) -> int:
    """The rank of seat ``number`` in the ``row_position``-th row (0 is the front) of numbers first..last."""
    from_middle = abs(2 * number - (first_number + last_number))
    return row_position * RANK_ROW_STEP + min(from_middle, RANK_ROW_STEP - 1)


def seat_ranks(seats: Sequence[tuple[str, str, int]]) -> list[int]:
    """Default ranks for ``(section, row, number)`` seats, in their order: each section's rows
    front to back by :func:`row_order_key`, the middle of a row between its lowest and highest number."""
    rows_of: dict[str, set[str]] = {}
    span: dict[tuple[str, str], tuple[int, int]] = {}
    for section, row, number in seats:
        rows_of.setdefault(section, set()).add(row)
        low, high = span.get((section, row), (number, number))
        span[(section, row)] = (min(low, number), max(high, number))
    position = {
        (section, row): index
        for section, rows in rows_of.items()
        for index, row in enumerate(sorted(rows, key=row_order_key))
    }
    return [seat_rank(position[(s, r)], n, *span[(s, r)]) for s, r, n in seats]
