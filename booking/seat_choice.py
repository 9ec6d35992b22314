"""Best available: which free seats to give a request, as a pure function over seat rows.

No database here (booking/services/best_available.py reads the rows and holds the
choice), so every rule is unit-tested on small layouts (tests/test_seat_choice.py).

The rules, as the API documents them (docs/api.md, "Best available"):

- Best is the lowest total ``rank``; ties go to the lower seat ids.
- Eligible: a free seat, of the ``category`` and ``section`` asked for (if asked).
  Accessible places are kept for those who ask: with ``accessible`` false they are
  never chosen; with ``accessible`` true the choice must include at least one
  (a wheelchair place with its companions beside it), the rest may be any seats.
- ``together``: ``quantity`` consecutive numbers in one row of one section; a gap
  in the numbers is an aisle, so 7 and 9 with no 8 are not adjacent.
- No stranded single seat: a block strands a seat when a free seat right beside it
  would be left with no free neighbour on its other side (a taken seat, an aisle or
  the end of the row). Among the blocks of the row that holds the best block, one
  that strands fewer seats is taken before a better-ranked one: "equally good"
  means "in the same row of the same section". A buyer is never moved to a worse
  row only to avoid stranding a seat. (``together`` false: no stranding rule.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Place:
    """One seat of a row the choice looks at. ``free``: nobody holds, booked or blocked it now."""

    id: int
    section: str
    row: str
    number: int
    rank: int
    free: bool = True
    category: str = ""
    accessible: bool = False


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a best-available request asks for."""

    quantity: int
    category: str | None = None
    section: str | None = None
    together: bool = True
    accessible: bool = False

    def admits(self, place: Place) -> bool:
        """Whether the place may be part of this request's choice (free, filters, accessible places)."""
        return (
            place.free
            and (self.category is None or place.category == self.category)
            and (self.section is None or place.section == self.section)
            and (self.accessible or not place.accessible)
        )


@dataclass(frozen=True, slots=True)
class Choice:
    """The chosen seats (by rank, best first) and their total rank."""

    ids: tuple[int, ...]
    total_rank: int
    stranded: int = 0


def choose(places: Iterable[Place], wanted: Wanted) -> Choice | None:
    """The best choice for ``wanted`` among ``places``, or None when nothing fits.

    For ``together`` the places must include every seat of each row in play
    (taken ones with ``free`` false), so that adjacency and stranding are judged on
    the whole row.
    """
    if wanted.quantity < 1:
        raise ValueError("quantity must be at least 1")
    return _choose_together(places, wanted) if wanted.together else _choose_apart(places, wanted)


def _choose_apart(places: Iterable[Place], wanted: Wanted) -> Choice | None:
    """The lowest-rank eligible seats anywhere; with ``accessible``, at least one accessible one."""
    eligible = sorted((p for p in places if wanted.admits(p)), key=lambda p: (p.rank, p.id))
    if len(eligible) < wanted.quantity:
        return None
    chosen = eligible[: wanted.quantity]
    if wanted.accessible and not any(p.accessible for p in chosen):
        first_accessible = next((p for p in eligible if p.accessible), None)
        if first_accessible is None:
            return None
        # Any set with an accessible place costs at least the best accessible one plus the best others.
        chosen = [*chosen[:-1], first_accessible]
    chosen.sort(key=lambda p: (p.rank, p.id))
    return Choice(tuple(p.id for p in chosen), sum(p.rank for p in chosen))


def _choose_together(places: Iterable[Place], wanted: Wanted) -> Choice | None:
    rows: dict[tuple[str, str], list[Place]] = defaultdict(list)
    for place in places:
        rows[(place.section, place.row)].append(place)
    best_per_row: list[tuple[tuple[int, tuple[int, ...]], list[Choice]]] = []
    for row in rows.values():
        blocks = list(_blocks(sorted(row, key=lambda p: p.number), wanted))
        if blocks:
            best = min(blocks, key=lambda c: (c.total_rank, sorted(c.ids)))
            best_per_row.append(((best.total_rank, tuple(sorted(best.ids))), blocks))
    if not best_per_row:
        return None
    # The row of the best block; within it, fewer stranded seats first, then rank.
    _, blocks = min(best_per_row, key=lambda item: item[0])
    return min(blocks, key=lambda c: (c.stranded, c.total_rank, sorted(c.ids)))


def _blocks(row: Sequence[Place], wanted: Wanted) -> Iterable[Choice]:
    """Every run of ``quantity`` adjacent eligible seats in one row (sorted by number)."""
    q = wanted.quantity
    for start in range(len(row) - q + 1):
        block = row[start : start + q]
        if block[-1].number - block[0].number != q - 1:  # a gap: an aisle inside the block
            continue
        if not all(wanted.admits(p) for p in block):
            continue
        if wanted.accessible and not any(p.accessible for p in block):
            continue
        stranded = _strands(row, start - 1, start - 2, block[0].number - 1) + _strands(
            row, start + q, start + q + 1, block[-1].number + 1
        )
        by_rank = sorted(block, key=lambda p: (p.rank, p.id))
        yield Choice(tuple(p.id for p in by_rank), sum(p.rank for p in block), stranded)


def _strands(row: Sequence[Place], beside: int, beyond: int, beside_number: int) -> int:
    """1 if the seat at index ``beside`` (number ``beside_number``, next to the block) is free
    and would be left alone: nothing free, adjacent, at index ``beyond``."""
    if not 0 <= beside < len(row) or row[beside].number != beside_number or not row[beside].free:
        return 0
    step = beside_number - (row[beyond].number if 0 <= beyond < len(row) else beside_number)
    lonely = not (0 <= beyond < len(row)) or abs(step) != 1 or not row[beyond].free
    return 1 if lonely else 0
