"""Layouts from a file: import_seats, create_event --layout and the demo's theatre.

A file with any bad line adds nothing and names every bad line; a good file
imports every field, with default labels and ranks where it leaves them out.
"""

from __future__ import annotations

import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from booking.layouts import LayoutInvalid, escape_cell, layout_conflicts, read_layout
from booking.management.commands.load_demo import DEMO_LAYOUT
from booking.models import Event, Seat
from booking.seating import RANK_ROW_STEP
from booking.services.layouts import seats_import_layout

from .racing import race

pytestmark = pytest.mark.django_db

HEADER = "section,row,number,label,category,accessible,rank\n"


def write(tmp_path: Path, text: str | bytes, name: str = "layout.csv") -> str:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def import_seats(event_id: int, path: str) -> str:
    out = StringIO()
    call_command("import_seats", str(event_id), path, stdout=out, stderr=StringIO())
    return out.getvalue()


def import_fails(event: Event, path: str) -> str:
    """The command's error text; nothing of the file (nor anything else) was written."""
    before = Seat.objects.count()
    with pytest.raises(CommandError) as failure:
        import_seats(event.pk, path)
    assert Seat.objects.count() == before
    return str(failure.value)


def test_a_good_file_imports_every_field(tmp_path, event):
    path = write(
        tmp_path,
        HEADER
        + "Stalls,A,1,Stalls A1,A,true,5\n"
        + "Stalls,A,2,,A,no,\n"
        + "Balcony,AA,12,Bal AA12,C,YES,70\n"
        + "\n"  # a blank line is skipped
        + "Balcony,AA,13,,C,0,\n",
    )
    assert "Added 4 seats" in import_seats(event.pk, path)

    seats = {s.label: s for s in Seat.objects.filter(event=event, section__in=["Stalls", "Balcony"]).order_by("id")}
    assert list(seats) == ["Stalls A1", "Stalls A2", "Bal AA12", "Balcony AA13"]
    first = seats["Stalls A1"]
    assert (first.section, first.row, first.number, first.category, first.accessible, first.rank) == (
        "Stalls",
        "A",
        1,
        "A",
        True,
        5,
    )
    assert (seats["Bal AA12"].accessible, seats["Bal AA12"].rank) == (True, 70)
    assert not seats["Balcony AA13"].accessible
    assert all(s.status == "available" for s in seats.values())
    # A default rank: the front row, from the middle out (the row A's numbers run 1-2).
    assert seats["Stalls A2"].rank == 1


def test_default_ranks_are_front_rows_first_then_the_middle_per_section(tmp_path, make_event):
    event = make_event(name="Empty", rows=(), seats_per_row=1)
    lines = [f"Stalls,{row},{n},,A,no," for row in "BA" for n in range(1, 8)]
    lines += [f"Circle,A,{n},,B,no," for n in (1, 2, 3, 6, 7, 8)]  # an aisle: 4 and 5 missing
    import_seats(event.pk, write(tmp_path, HEADER + "\n".join(lines) + "\n"))

    def best(section: str) -> list[str]:
        return list(
            Seat.objects.filter(event=event, section=section).order_by("rank", "id").values_list("label", flat=True)
        )

    stalls = best("Stalls")
    assert stalls[:3] == ["Stalls A4", "Stalls A3", "Stalls A5"]  # row A before B, the middle first
    assert stalls[7] == "Stalls B4"
    assert Seat.objects.get(event=event, label="Stalls B4").rank == RANK_ROW_STEP
    # Each section ranks on its own; the aisle's gap counts as seats in the middle.
    assert best("Circle")[:2] == ["Circle A3", "Circle A6"]


def test_a_bom_and_crlf_line_ends_are_fine(tmp_path, event):
    path = write(tmp_path, ("\ufeff" + HEADER + "Stalls,Z,1,,A,yes,\r\n").replace("\n", "\r\n").encode())
    import_seats(event.pk, path)
    assert Seat.objects.get(event=event, label="Stalls Z1").accessible


def test_label_and_rank_columns_may_be_left_out(tmp_path, event):
    import_seats(event.pk, write(tmp_path, "row,number,section,category,accessible\nZ,3,,B,no\n"))
    seat = Seat.objects.get(event=event, label="Z3")  # no section: the label is row + number
    assert (seat.section, seat.category, seat.rank) == ("", "B", 0)


def test_every_bad_line_is_reported_with_its_number_and_nothing_is_written(tmp_path, event):
    path = write(
        tmp_path,
        HEADER
        + "Stalls,A,1,,A,yes,\n"  # line 2: good
        + "Stalls,A,x,,A,yes,\n"  # 3: not a number
        + "Stalls,,2,,A,yes,\n"  # 4: no row
        + "Stalls,A,3,,A,perhaps,\n"  # 5: not a boolean
        + "Stalls,A,1,,A,no,\n"  # 6: the same seat as line 2
        + "Stalls,A,4,Stalls A1,A,no,\n"  # 7: the same label as line 2
        + "Stalls,A,5,,A,no,-3\n"  # 8: a negative rank
        + "Stalls,A,6\n"  # 9: too few values
        + "Stalls,A,7,,A,no,,surplus\n"  # 10: too many
        + f"Stalls,{'R' * 17},8,,A,no,\n"  # 11: row too long
        + "Stalls,A,0,,A,no,\n"  # 12: seat 0
        + "Stalls,A,,,A,no,\n",  # 13: no number
    )
    text = import_fails(event, path)
    for line, words in [
        (3, "number 'x' is not a whole number"),
        (4, "row is empty"),
        (5, "accessible 'perhaps'"),
        (6, "Stalls row A seat 1 is also on line 2"),
        (7, "label 'Stalls A1' is also on line 2"),
        (8, "rank '-3' is not a whole number"),
        (9, "missing values for label, category, accessible, rank"),
        (10, "8 values, but the header has 7 columns"),
        (11, f"row '{'R' * 17}…' is longer than 16 characters"),
        (12, "number 0 is not between 1"),
        (13, "number is empty"),
    ]:
        assert f"line {line}: {words}" in text, (line, text)
    assert "line 2:" not in text
    assert "no seat was added" in text
    assert not Seat.objects.filter(event=event, section="Stalls").exists()


def test_missing_and_unknown_columns(tmp_path, event):
    text = import_fails(event, write(tmp_path, "section,row,numbr,category\nStalls,A,1,A\n"))
    assert "line 1: unknown column 'numbr'" in text
    assert "line 1: missing columns number, accessible" in text


def test_seats_the_event_has_already(tmp_path, event):
    # The event's block has A1..C10 (no section); a layout's own seats may not repeat them.
    text = import_fails(event, write(tmp_path, HEADER + ",D,1,,A,no,\n,A,1,,A,no,\n,D,2,A2,A,no,\n"))
    assert "line 3: row A seat 1 exists already in this event" in text
    assert "line 4: label 'A2' exists already in this event" in text
    assert "line 2:" not in text


def test_not_utf8_empty_and_header_only_files(tmp_path, event):
    latin1 = (HEADER + "Parkett,A,1,,A,no,\nGalerie für alle,A,1,,A,no,\n").encode("latin-1")
    assert "line 3: the file is not UTF-8" in import_fails(event, write(tmp_path, latin1))
    assert "the file is empty" in import_fails(event, write(tmp_path, "\n\n"))
    assert "a header but no seat" in import_fails(event, write(tmp_path, HEADER))
    with pytest.raises(CommandError, match="No event 999999"):
        import_seats(999_999, write(tmp_path, HEADER + "S,A,1,,A,no,\n"))
    with pytest.raises(CommandError, match="Cannot read"):
        import_seats(event.pk, str(tmp_path / "missing.csv"))


def test_a_quoted_newline_counts_from_the_record_start(tmp_path, event):
    text = import_fails(event, write(tmp_path, HEADER + '"Stalls\nleft",A,1,,A,no,\nStalls,A,x,,A,no,\n'))
    assert "line 4: number 'x'" in text


def test_export_formula_escaping_round_trips():
    assert escape_cell("=SUM(A1)") == "'=SUM(A1)"
    assert escape_cell("@cmd") == "'@cmd"
    assert escape_cell("Stalls") == "Stalls"
    seats = read_layout((HEADER + "'=Box,'-1,3,,A,no,\n").encode())
    assert (seats[0].section, seats[0].row) == ("=Box", "-1")


def test_create_event_with_a_layout(tmp_path):
    path = write(tmp_path, HEADER + "Stalls,A,1,,A,no,\nStalls,A,2,,A,yes,\nBox,1,1,Royal box,A,no,\n")
    out = StringIO()
    call_command("create_event", "Opera", "--layout", path, "--hold-seconds", "90", stdout=out, stderr=StringIO())
    event = Event.objects.get(pk=int(out.getvalue().split()[-1]))
    assert (event.name, event.hold_seconds) == ("Opera", 90)
    assert sorted(event.seats.values_list("label", flat=True)) == ["Royal box", "Stalls A1", "Stalls A2"]


def test_create_event_with_a_bad_layout_creates_no_event(tmp_path):
    path = write(tmp_path, HEADER + "Stalls,A,1,,A,maybe,\n")
    with pytest.raises(CommandError, match="line 2: accessible 'maybe'"):
        call_command("create_event", "Opera", "--layout", path, stdout=StringIO(), stderr=StringIO())
    with pytest.raises(CommandError, match="either --layout or --rows"):
        call_command("create_event", "Opera", "--layout", path, "--rows", "A-B", stdout=StringIO(), stderr=StringIO())
    assert not Event.objects.exists()


def test_create_event_keeps_its_rectangle_by_default():
    out = StringIO()
    call_command("create_event", "Plain", stdout=out, stderr=StringIO())
    assert Event.objects.get(pk=int(out.getvalue().split()[-1])).seats.count() == 200


def test_the_sample_theatre_is_what_its_script_writes():
    script = DEMO_LAYOUT.with_name("make_sample_theatre.py")
    code = f"import runpy, sys; sys.stdout.write(runpy.run_path({str(script)!r})['layout_csv']())"
    written = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert written == DEMO_LAYOUT.read_text(encoding="utf-8")


def test_the_demo_loads_the_sample_theatre(capsys):
    call_command("load_demo")
    out = capsys.readouterr().out
    event = Event.objects.get(name="Demo concert")
    seats = event.seats.all()
    assert seats.count() == len(read_layout(DEMO_LAYOUT.read_bytes())) > 500
    assert set(seats.values_list("section", flat=True)) == {"Stalls", "Circle left", "Circle right", "Balcony"}
    assert set(seats.values_list("category", flat=True)) == {"A", "B", "C"}
    assert seats.filter(accessible=True).count() >= 4
    # Curved rows: the Stalls' rows differ in length; aisles: gaps in the numbers.
    lengths = {row: seats.filter(section="Stalls", row=row).count() for row in ("A", "Q")}
    assert lengths["A"] < lengths["Q"]
    numbers = sorted(seats.filter(section="Stalls", row="A").values_list("number", flat=True))
    assert numbers[-1] - numbers[0] + 1 > len(numbers)
    assert f"({seats.count()} seats, sections Balcony, Circle left, Circle right, Stalls)" in out
    # The Stalls' best seats: the middle of the front row.
    best = seats.filter(section="Stalls").order_by("rank", "id").values_list("row", "number")[:2]
    assert list(best) == [("A", 15), ("A", 16)]
    call_command("load_demo")  # again: nothing twice
    assert Event.objects.count() == 1 and event.seats.count() == seats.count()


def test_layout_invalid_lists_problems_in_line_order():
    with pytest.raises(LayoutInvalid) as failure:
        read_layout((HEADER + "S,A,1,,A,x,\nS,,1,,A,no,\n").encode())
    assert [p.line for p in failure.value.problems] == [2, 3]


def _two_layouts_of_the_same_places() -> list[list]:
    """The same 50 places twice, under other labels: only the place check can tell them apart."""
    return [
        read_layout((HEADER + "".join(f"Stalls,A,{n},{prefix}{n},A,no,\n" for n in range(1, 51))).encode())
        for prefix in ("X", "Y")
    ]


def _import_and_linger(event, seats, *, lock: bool) -> str:
    """One import, its transaction kept open a moment after the write, so the other overlaps it."""
    try:
        with transaction.atomic():
            if lock:
                seats_import_layout(event=event, seats=seats)
            else:  # the control: the same checks and write without the event's lock
                existing = Seat.objects.filter(event=event).values_list("section", "row", "number", "label")
                if problems := layout_conflicts(seats, list(existing)):
                    raise LayoutInvalid(problems)
                time.sleep(0.3)  # both have checked before either writes
                Seat.objects.bulk_create(seat.as_seat(event=event) for seat in seats)
            time.sleep(0.3)
    except LayoutInvalid as exc:
        return f"refused: {exc.problems[0]}"
    return "imported"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("lock", [True, False], ids=["with-the-lock", "control-without"])
def test_two_imports_of_the_same_places_at_once(make_event, lock):
    event = make_event(name="Race", rows=(), seats_per_row=1)
    first, second = _two_layouts_of_the_same_places()
    results = race(
        [lambda: _import_and_linger(event, first, lock=lock), lambda: _import_and_linger(event, second, lock=lock)]
    )
    places = Seat.objects.filter(event=event).values_list("section", "row", "number")
    if lock:
        assert sorted(results) == ["imported", "refused: line 2: Stalls row A seat 1 exists already in this event"]
        assert places.count() == len(set(places)) == 50
    else:  # without it both pass their checks: every place twice
        assert results == ["imported", "imported"]
        assert places.count() == 100 and len(set(places)) == 50
