"""Best available's choice (booking/seat_choice.py) on small layouts, without a database."""

from __future__ import annotations

import pytest

from booking.seat_choice import Place, Wanted, choose
from booking.seating import seat_rank, seat_ranks


def layout(*rows: str, section: str = "", category: str = "", first_id: int = 1) -> list[Place]:
    """Rows drawn as text, front row first: ``.`` free, ``x`` taken (held, booked or blocked),
    ``a`` a free accessible place, ``A`` a taken one, a space an aisle (no seat, a gap in the
    numbers). Seat numbers count every position from 1, so a gap skips a number. Default ranks."""
    places: list[Place] = []
    spans = []
    for drawing in rows:
        numbers = [n for n, char in enumerate(drawing, start=1) if char != " "]
        spans.append((min(numbers), max(numbers)))
    next_id = first_id
    for row_index, drawing in enumerate(rows):
        low, high = spans[row_index]
        for number, char in enumerate(drawing, start=1):
            if char == " ":
                continue
            places.append(
                Place(
                    id=next_id,
                    section=section,
                    row=chr(ord("A") + row_index),
                    number=number,
                    rank=seat_rank(row_index, number, low, high),
                    free=char in ".a",
                    category=category,
                    accessible=char in "aA",
                )
            )
            next_id += 1
    return places


def labels(places: list[Place], choice) -> list[str]:
    by_id = {p.id: p for p in places}
    assert choice is not None
    return sorted((f"{by_id[i].row}{by_id[i].number}" for i in choice.ids), key=lambda s: (s[0], int(s[1:])))


def test_the_best_pair_of_an_empty_hall_is_in_the_middle_of_the_front_row():
    hall = layout("..........", "..........")
    assert labels(hall, choose(hall, Wanted(quantity=2))) == ["A5", "A6"]
    assert labels(hall, choose(hall, Wanted(quantity=3))) in (["A4", "A5", "A6"], ["A5", "A6", "A7"])


def test_an_odd_row_has_one_middle_seat():
    hall = layout(".........")
    assert labels(hall, choose(hall, Wanted(quantity=1))) == ["A5"]
    assert labels(hall, choose(hall, Wanted(quantity=3))) == ["A4", "A5", "A6"]


def test_held_and_booked_seats_are_never_chosen_and_the_next_best_block_is():
    hall = layout("...xx.....", "..........")
    choice = choose(hall, Wanted(quantity=2))
    # Front row first: a pair in row A beats any in row B, wherever it sits in row A.
    assert labels(hall, choice) == ["A6", "A7"]
    assert choose(layout("xxxxxxxxxx", ".........."), Wanted(quantity=4)) is not None
    assert labels(layout("xxxxxxxxxx", ".........."), choose(layout("xxxxxxxxxx", ".........."), Wanted(quantity=4)))[
        0
    ].startswith("B")


def test_together_means_consecutive_numbers_an_aisle_breaks_a_block():
    # Row A: seats 1-4, an aisle (no seat 5), 6-9. Four together cannot straddle the aisle.
    hall = layout(".... ....", ".........")
    chosen = labels(hall, choose(hall, Wanted(quantity=4)))
    assert chosen in (["A1", "A2", "A3", "A4"], ["A6", "A7", "A8", "A9"])
    # Five together do not fit in row A at all: row B.
    assert labels(hall, choose(hall, Wanted(quantity=5))) == ["B3", "B4", "B5", "B6", "B7"]


def test_every_chosen_block_is_adjacent_in_one_row_of_one_section():
    stalls = layout("..x..x....", ".x.x.x.x..", section="Stalls")
    balcony = layout("..........", section="Balcony", first_id=100)
    places = stalls + balcony
    for quantity in range(1, 6):
        choice = choose(places, Wanted(quantity=quantity))
        assert choice is not None
        chosen = [p for p in places if p.id in choice.ids]
        assert len({(p.section, p.row) for p in chosen}) == 1
        numbers = sorted(p.number for p in chosen)
        assert numbers == list(range(numbers[0], numbers[0] + quantity))
        assert all(p.free for p in chosen)


def test_nothing_fits_is_none():
    assert choose(layout("x.x.x.x"), Wanted(quantity=2)) is None
    assert choose(layout("..."), Wanted(quantity=4)) is None
    assert choose([], Wanted(quantity=1)) is None


def test_no_single_seat_is_stranded_when_another_block_of_the_row_avoids_it():
    # Free: 1-3 (3 seats) and 8-10 after seats 4-7 taken... rather a row where the best pair strands:
    # Row A: seats 4-7 free between taken 3 and 8; the best pair by rank is 5-6, which would leave
    # 4 and 7 alone. Pairs 4-5 and 6-7 leave nobody alone: one of them is chosen.
    hall = layout("..x....x..")
    choice = choose(hall, Wanted(quantity=2))
    assert labels(hall, choice) in (["A4", "A5"], ["A6", "A7"])
    assert choice.stranded == 0


def test_a_stranding_block_is_taken_when_the_row_has_no_better_one():
    # Three free seats between taken ones: any pair strands the third. Still the front row's best pair.
    hall = layout("xxx...xxxx", "..........")
    choice = choose(hall, Wanted(quantity=2))
    assert labels(hall, choice)[0].startswith("A")
    assert choice.stranded == 1


def test_a_buyer_is_not_sent_to_a_worse_row_to_avoid_stranding():
    # Row A has three free seats only (any pair strands one); row B is empty. "Equally good" is the
    # same row: the pair stays in row A (documented in booking/seat_choice.py and docs/api.md).
    hall = layout("xxxx...xxx", "..........")
    assert labels(hall, choose(hall, Wanted(quantity=2)))[0].startswith("A")


def test_a_free_seat_beside_an_aisle_counts_as_stranded():
    # Row A: 1-2, aisle, 4-7 (numbers skip 3). Taken: 7. Pairs in 4-6: 4-5 strands 6 (7 taken),
    # 5-6 strands 4 (the aisle at 3 is no neighbour). 1-2 leaves nothing alone but ranks worse.
    hall = layout(".. ...x")
    choice = choose(hall, Wanted(quantity=2))
    assert labels(hall, choice) == ["A1", "A2"]
    assert choice.stranded == 0


def test_accessible_places_are_kept_for_those_who_ask():
    # The middle of row A is accessible: a buyer who does not ask never gets it.
    hall = layout("...aaaa...", "..........")
    plain = choose(hall, Wanted(quantity=2))
    assert all(not p.accessible for p in hall if p.id in plain.ids)
    assert labels(hall, plain) in (["A1", "A2"], ["A2", "A3"], ["A8", "A9"], ["A9", "A10"], ["B5", "B6"])
    # Row A still has non-accessible pairs: front row first.
    assert labels(hall, plain)[0].startswith("A")
    asked = choose(hall, Wanted(quantity=2, accessible=True))
    assert labels(hall, asked) == ["A5", "A6"]


def test_an_accessible_request_includes_at_least_one_accessible_place_with_its_companions():
    hall = layout("a.........", "..........")
    choice = choose(hall, Wanted(quantity=3, accessible=True))
    assert labels(hall, choice) == ["A1", "A2", "A3"]
    # No accessible place free: nothing fits, even though ordinary seats are free.
    assert choose(layout("A.........", ".........."), Wanted(quantity=2, accessible=True)) is None


def test_category_and_section_filters():
    front = layout("..........", section="Stalls", category="A")
    back = layout("..........", section="Stalls", category="B", first_id=50)
    back = [Place(p.id, p.section, "B", p.number, p.rank + 10_000, p.free, p.category, p.accessible) for p in back]
    balcony = layout("..........", section="Balcony", category="B", first_id=100)
    places = front + back + balcony
    a = choose(places, Wanted(quantity=2, category="A"))
    assert {p.category for p in places if p.id in a.ids} == {"A"}
    b = choose(places, Wanted(quantity=2, category="B"))
    assert {p.category for p in places if p.id in b.ids} == {"B"}
    in_balcony = choose(places, Wanted(quantity=2, section="Balcony"))
    assert {p.section for p in places if p.id in in_balcony.ids} == {"Balcony"}
    assert choose(places, Wanted(quantity=2, category="C")) is None
    assert choose(places, Wanted(quantity=2, category="A", section="Balcony")) is None


def test_a_block_never_mixes_categories():
    # Seats 1-5 category A, 6-10 category B, in one row: three of A together come from 1-5 only.
    row = layout(".....", category="A") + [
        Place(100 + n, "", "A", n, seat_rank(0, n, 1, 10), True, "B") for n in range(6, 11)
    ]
    row = [Place(p.id, p.section, p.row, p.number, seat_rank(0, p.number, 1, 10), p.free, p.category) for p in row]
    choice = choose(row, Wanted(quantity=3, category="A"))
    assert labels(row, choice) == ["A3", "A4", "A5"]


def test_apart_takes_the_lowest_ranks_anywhere():
    hall = layout("x.x.x.x.x.", "..........")
    choice = choose(hall, Wanted(quantity=3, together=False))
    assert labels(hall, choice) == ["A4", "A6", "A8"]
    assert choose(layout("x.x"), Wanted(quantity=2, together=False)) is None


def test_apart_with_accessible_takes_the_best_accessible_place_and_the_best_others():
    hall = layout("..........", "a.........")
    choice = choose(hall, Wanted(quantity=3, together=False, accessible=True))
    assert labels(hall, choice) == ["A5", "A6", "B1"]
    plain = choose(hall, Wanted(quantity=3, together=False))
    assert not any(p.accessible for p in hall if p.id in plain.ids)


def test_ties_are_broken_by_seat_id_so_the_choice_is_stable():
    hall = layout("..........")
    assert choose(hall, Wanted(quantity=1)) == choose(list(reversed(hall)), Wanted(quantity=1))


def test_quantity_must_be_positive():
    with pytest.raises(ValueError):
        choose(layout("..."), Wanted(quantity=0))


def test_default_ranks_front_rows_first_then_the_middle():
    seats = [("", row, n) for row in ("B", "A", "AA") for n in range(1, 5)]
    ranks = dict(zip(((r, n) for _, r, n in seats), seat_ranks(seats), strict=True))
    assert ranks[("A", 2)] == ranks[("A", 3)] < ranks[("A", 1)] == ranks[("A", 4)]
    assert max(ranks[("A", n)] for n in range(1, 5)) < min(ranks[("B", n)] for n in range(1, 5))
    assert max(ranks[("B", n)] for n in range(1, 5)) < min(ranks[("AA", n)] for n in range(1, 5))
    # Sections rank their rows on their own; numeric rows in number order (2 before 10).
    other = seat_ranks([("Balcony", "10", 1), ("Balcony", "2", 1), ("Stalls", "A", 1)])
    assert other[1] < other[0] and other[1] == other[2]
