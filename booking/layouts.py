"""Venue layouts from a CSV file: the one place for the file's format and its rules.

``import_seats``, ``create_event --layout``, ``load_demo`` and the admin's import
all read a file through :func:`read_layout`: columns
``section,row,number,label,category,accessible,rank`` (``label`` and ``rank``
optional), one seat a line. Every bad line is reported with its line number,
and a file with any problem yields no seat at all. The write is
:func:`booking.services.layouts.seats_import_layout`; docs/layouts.md describes the format.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest
from .models import Seat
from .seating import seat_label, seat_ranks

COLUMNS = ("section", "row", "number", "label", "category", "accessible", "rank")
REQUIRED_COLUMNS = ("section", "row", "number", "category", "accessible")
#: Columns an export adds (booking/admin_layouts.py); ignored on import, so an export imports as a layout.
EXPORT_ONLY_COLUMNS = ("status", "block_reason", "holder", "booking")

MAX_SEAT_NUMBER = 1_000_000
MAX_RANK = 2_147_483_647  # PositiveIntegerField's ceiling on every database
#: One file's seats at most (a stadium and then some); more is a mistake or an attack.
MAX_LAYOUT_SEATS = 200_000

TRUE_WORDS = frozenset({"true", "1", "yes", "y"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", ""})

#: A spreadsheet runs a cell starting with one of these as a formula: the export prefixes "'".
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _max_length(field: str) -> int:
    limit = getattr(Seat._meta.get_field(field), "max_length", None)
    assert isinstance(limit, int), field  # CharFields only
    return limit


@dataclass(frozen=True)
class LayoutSeat:
    """One valid line of a layout file, with its label and rank filled in."""

    line: int
    section: str
    row: str
    number: int
    label: str
    category: str
    accessible: bool
    rank: int

    def as_seat(self, **extra) -> Seat:
        return Seat(
            section=self.section,
            row=self.row,
            number=self.number,
            label=self.label,
            category=self.category,
            accessible=self.accessible,
            rank=self.rank,
            **extra,
        )


@dataclass(frozen=True)
class LayoutProblem:
    line: int | None  # None: the file as a whole
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


class LayoutInvalid(InvalidRequest):
    """A layout file with problems: nothing of it was written."""

    def __init__(self, problems: Sequence[LayoutProblem]):
        self.problems = sorted(problems, key=lambda p: p.line or 0)
        count = len(self.problems)
        super().__init__(f"The layout has {count} problem{'s' if count != 1 else ''}; no seat was added.")


# --- Reading the file ------------------------------------------------------------


def escape_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: a leading formula character gets a "'" before it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def unescape_cell(text: str) -> str:
    """The inverse of :func:`escape_cell`, so an export imports as it was."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def decode_layout(data: bytes) -> str:
    """The file's text: UTF-8, with or without a byte-order mark; LayoutInvalid otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LayoutInvalid(
            [LayoutProblem(line, f"the file is not UTF-8 text (byte {exc.start + 1}); save it as CSV UTF-8")]
        ) from exc


def read_records(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (line number, cells) of every non-blank record; a record that spans
    lines (a quoted newline) counts from its first line."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = cells
            else:
                records.append((line, cells))
            if len(records) > MAX_LAYOUT_SEATS:
                raise LayoutInvalid([LayoutProblem(line, f"a layout has at most {MAX_LAYOUT_SEATS:,} seats")])
    except csv.Error as exc:
        raise LayoutInvalid([LayoutProblem(reader.line_num, f"not valid CSV ({exc})")]) from exc
    if header is None:
        raise LayoutInvalid([LayoutProblem(None, "the file is empty: it needs a header line and one line a seat")])
    return header, records


def read_layout(data: bytes) -> list[LayoutSeat]:
    """Every seat of a layout file, checked; LayoutInvalid with every problem found."""
    header, records = read_records(decode_layout(data))
    return parse_layout(header, records)


# --- The rules ---------------------------------------------------------------------


def _columns(header: Sequence[str]) -> tuple[list[str], list[LayoutProblem]]:
    names = [name.strip().lower() for name in header]
    problems = []
    unknown = [n for n in names if n not in COLUMNS and n not in EXPORT_ONLY_COLUMNS]
    if unknown:
        problems.append(
            LayoutProblem(1, f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}")
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        problems.append(LayoutProblem(1, f"column{'s' if len(twice) > 1 else ''} {', '.join(twice)} given twice"))
    missing = [n for n in REQUIRED_COLUMNS if n not in names]
    if missing:
        problems.append(
            LayoutProblem(
                1,
                f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"(the header is {','.join(COLUMNS)}; label and rank may be left out)",
            )
        )
    return names, problems


def _integer(text: str, what: str, low: int, high: int) -> tuple[int | None, str | None]:
    if not (text.isascii() and text.isdigit()):
        return None, f"{what} '{text}' is not a whole number"
    value = int(text)
    if not low <= value <= high:
        return None, f"{what} {value} is not between {low} and {high:,}"
    return value, None


def parse_layout(header: Sequence[str], records: Iterable[tuple[int, Sequence[str]]]) -> list[LayoutSeat]:
    """Check every record against the rules and fill in default labels and ranks.

    Raises LayoutInvalid listing every problem: a missing or unknown column,
    an empty row or number, a bad integer or boolean, a value too long, the
    same seat or label twice in the file.
    """
    names, problems = _columns(header)
    if problems:
        raise LayoutInvalid(problems)
    limits = {field: _max_length(field) for field in ("section", "row", "label", "category")}
    parsed: list[tuple[int, dict[str, Any]]] = []
    for line, cells in records:
        bad: list[str] = []
        if len(cells) > len(names) and any(c.strip() for c in cells[len(names) :]):
            bad.append(f"{len(cells)} values, but the header has {len(names)} columns")
        if len(cells) < len(names):
            bad.append(f"missing values for {', '.join(names[len(cells) :])}")
        value: dict[str, Any] = {
            name: unescape_cell(cells[i].strip()) if i < len(cells) else "" for i, name in enumerate(names)
        }
        for field, limit in limits.items():
            if len(value.get(field, "")) > limit:
                bad.append(f"{field} '{value[field][:20]}…' is longer than {limit} characters")
        if not value["row"]:
            bad.append("row is empty")
        number, why = _integer(value["number"], "number", 1, MAX_SEAT_NUMBER) if value["number"] else (None, None)
        if not value["number"]:
            bad.append("number is empty")
        elif why:
            bad.append(why)
        rank, why = _integer(value["rank"], "rank", 0, MAX_RANK) if value.get("rank") else (None, None)
        if why:
            bad.append(why)
        word = value["accessible"].lower()
        if word not in TRUE_WORDS | FALSE_WORDS:
            bad.append(f"accessible '{value['accessible']}' is not one of true/false, yes/no, 1/0")
        if bad:
            problems.extend(LayoutProblem(line, reason) for reason in bad)
            continue
        value.update(number=number, rank=rank, accessible=word in TRUE_WORDS)
        parsed.append((line, value))

    seen_places: dict[tuple[str, str, int], int] = {}
    seen_labels: dict[str, int] = {}
    for line, value in parsed:
        place = (value["section"], value["row"], value["number"])
        if place in seen_places:
            problems.append(LayoutProblem(line, f"{describe_place(*place)} is also on line {seen_places[place]}"))
        else:
            seen_places[place] = line
        label = value.get("label") or default_label(*place)
        if len(label) > limits["label"]:
            problems.append(
                LayoutProblem(line, f"the label '{label}' is longer than {limits['label']} characters: give a label")
            )
        elif label in seen_labels:
            problems.append(LayoutProblem(line, f"label '{label}' is also on line {seen_labels[label]}"))
        else:
            seen_labels[label] = line
        value["label"] = label
    if problems:
        raise LayoutInvalid(problems)
    if not parsed:
        raise LayoutInvalid([LayoutProblem(None, "the file has a header but no seat")])

    ranks = seat_ranks([(v["section"], v["row"], v["number"]) for _, v in parsed])
    return [
        LayoutSeat(
            line=line,
            section=v["section"],
            row=v["row"],
            number=v["number"],
            label=v["label"],
            category=v["category"],
            accessible=v["accessible"],
            rank=v["rank"] if v["rank"] is not None else default_rank,
        )
        for (line, v), default_rank in zip(parsed, ranks, strict=True)
    ]


def default_label(section: str, row: str, number: int) -> str:
    """``A7`` without a section, ``Balcony A7`` with one: unique whenever (section, row, number) is."""
    label = seat_label(row, number)
    return f"{section} {label}" if section else label


def describe_place(section: str, row: str, number: int) -> str:
    return f"{section + ' ' if section else ''}row {row} seat {number}"


def layout_conflicts(seats: Sequence[LayoutSeat], existing: Iterable[tuple[str, str, int, str]]) -> list[LayoutProblem]:
    """The layout's seats that an event has already: ``existing`` is its (section, row, number, label)."""
    places, labels = set(), set()
    for section, row, number, label in existing:
        places.add((section, row, number))
        labels.add(label)
    problems = []
    for seat in seats:
        if (seat.section, seat.row, seat.number) in places:
            where = describe_place(seat.section, seat.row, seat.number)
            problems.append(LayoutProblem(seat.line, f"{where} exists already in this event"))
        elif seat.label in labels:
            problems.append(LayoutProblem(seat.line, f"label '{seat.label}' exists already in this event"))
    return problems
