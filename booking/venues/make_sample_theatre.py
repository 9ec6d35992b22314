"""Writes sample_theatre.csv beside it: the demo's venue (python booking/venues/make_sample_theatre.py).

A theatre of four sections: the Stalls (rows A-Q, no I, widening towards the back,
three blocks between two aisles), Circle left and Circle right (short side rows),
and the Balcony (rows A-H, one centre aisle). Aisles are gaps in the seat numbers,
so a map that places seats by number shows them. Categories A/B/C are price
levels; wheelchair places (accessible) sit at the ends of the Stalls' last row and
the Balcony's first. tests/test_layouts.py checks the file matches this script.
"""

import csv
import io
import sys
from pathlib import Path

HEADER = ["section", "row", "number", "label", "category", "accessible", "rank"]
AISLE = 2  # numbers an aisle takes


def stalls():
    rows = [r for r in "ABCDEFGHJKLMNOPQ"]  # no row I, as theatres do
    for index, row in enumerate(rows):
        side = 6 + index // 3  # the curve: side blocks grow towards the back
        centre = 14 + (index // 2) * 2
        blocks = [("side", side), ("centre", centre), ("side", side)]
        number = 1
        last = row == rows[-1]
        for position, (kind, length) in enumerate(blocks):
            for seat in range(length):
                front = index < 8
                category = "A" if kind == "centre" and front else "B" if front or kind == "centre" else "C"
                # The back row's outer two places each side: wheelchair spaces by the doors.
                outer = (position == 0 and seat < 2) or (position == 2 and seat >= length - 2)
                yield "Stalls", row, number, category, last and outer
                number += 1
            number += AISLE


def circle(section):
    for index, row in enumerate("ABCDE"):
        for number in range(1, 11 + index + 1):
            yield section, row, number, "B" if index < 2 else "C", False


def balcony():
    for index, row in enumerate("ABCDEFGH"):
        half = 14 + index
        number = 1
        for block in range(2):
            for seat in range(half):
                accessible = index == 0 and ((block == 0 and seat == 0) or (block == 1 and seat == half - 1))
                yield "Balcony", row, number, "B" if index < 2 else "C", accessible
                number += 1
            number += AISLE


def layout_csv() -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for source in (stalls(), circle("Circle left"), circle("Circle right"), balcony()):
        for section, row, number, category, accessible in source:
            # label and rank left empty: the importer's defaults ("Stalls A7"; front rows, then the middle).
            writer.writerow([section, row, number, "", category, "yes" if accessible else "no", ""])
    return out.getvalue()


if __name__ == "__main__":
    target = Path(__file__).with_name("sample_theatre.csv")
    target.write_text(layout_csv(), encoding="utf-8")
    sys.stdout.write(f"wrote {target}\n")
