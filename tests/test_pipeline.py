"""Every seat write goes one way: Django's cursor, one atomic block, the push after COMMIT.

These would catch a return of a second pipeline: statements sent past Django's
cursor wrapper (CaptureQueriesContext would not see them), a transaction of
our own (Django would believe it is in autocommit), or a push sent before the
transaction committed (a rolled-back write would still be pushed).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from booking import services
from booking.models import Seat, SeatEvent
from booking.services import holds, pipeline

from .conftest import api_client_for
from .helpers import post

pytestmark = pytest.mark.django_db(transaction=True)  # the service's atomic block is the outermost


@pytest.fixture
def pushes(monkeypatch):
    """Each push, with whether a transaction was still open when it went out."""
    sent: list[tuple[list[int], bool]] = []

    def record(seats, **kwargs):
        sent.append(([seat["id"] for seat in seats], connection.in_atomic_block))

    monkeypatch.setattr(pipeline, "publish_seat_changes", record)
    return sent


@pytest.fixture
def statements():
    """Each statement sent through Django's cursor: its SQL, and the atomic block it ran in."""
    seen: list[tuple[str, int | None]] = []

    def wrapper(execute, sql, params, many, context):
        block = connection.atomic_blocks[0] if connection.in_atomic_block else None
        seen.append((sql, id(block) if block is not None else None))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        yield seen


def _seat_statements(seen: list[tuple[str, int | None]]) -> list[tuple[str, int | None]]:
    return [(sql, block) for sql, block in seen if "booking_seat" in sql]


@pytest.mark.parametrize("path", ["/api/lock", "/api/confirm", "/api/unlock"])
def test_a_write_runs_through_djangos_cursor_in_one_atomic_block_and_pushes_after_commit(
    path, make_user, seat_ids, pushes, statements
):
    alice = api_client_for(make_user("alice"))
    body = {"seatIds": seat_ids[:2]}
    if path != "/api/lock":
        assert post(alice, "/api/lock", body).status_code == 200
    pushes.clear()
    statements.clear()

    with CaptureQueriesContext(connection) as captured:
        response = post(alice, path, body)
    assert response.status_code == 200, response.content

    seat_sql = _seat_statements(statements)
    assert seat_sql, "the seat statements went past Django's cursor"
    blocks = {block for _, block in seat_sql}
    assert len(blocks) == 1 and None not in blocks, "the seat statements ran outside one atomic block"
    logged = [query["sql"] for query in captured.captured_queries]
    assert any("booking_seat" in sql for sql in logged)
    assert not any(sql.lstrip().upper().startswith(("PREPARE", "EXECUTE")) for sql in logged)
    if connection.vendor == "postgresql":
        locking = [sql for sql in logged if "FOR UPDATE" in sql and "booking_seatmapversion" not in sql]
        assert locking and all('FOR UPDATE OF "booking_seat"' in sql for sql in locking), logged
        # The seat map's counter, last: any of its rows that is free, never waited for.
        counters = [sql for sql in logged if "FOR UPDATE" in sql and "booking_seatmapversion" in sql]
        assert counters and all("SKIP LOCKED" in sql for sql in counters), logged
        # Django's own transaction (it logs BEGIN and COMMIT too), around every seat statement.
        assert logged.count("BEGIN") == 1 and logged.count("COMMIT") == 1, logged
        seat_positions = [n for n, sql in enumerate(logged) if "booking_seat" in sql]
        assert logged.index("BEGIN") < seat_positions[0] and seat_positions[-1] < logged.index("COMMIT")
    # One push, of the two seats, once the transaction had committed.
    assert pushes == [(sorted(seat_ids[:2]), False)]


@pytest.mark.parametrize("service", ["seats_lock", "seats_confirm", "seats_unlock"])
def test_a_write_that_rolls_back_after_its_writes_changes_nothing_and_pushes_nothing(
    service, seat_ids, pushes, monkeypatch
):
    ids = seat_ids[:2]
    if service != "seats_lock":
        services.seats_lock(seat_ids=ids, holder="alice")
    before = list(Seat.objects.filter(pk__in=ids).order_by("pk").values())
    audit_before = SeatEvent.objects.count()
    pushes.clear()
    save_audit = holds.save_audit

    def save_then_fail(audit):
        save_audit(audit)  # the seats and their audit rows are written ...
        raise RuntimeError("a fault after the writes")  # ... then the transaction rolls back

    monkeypatch.setattr(holds, "save_audit", save_then_fail)
    with pytest.raises(RuntimeError):
        getattr(services, service)(seat_ids=ids, holder="alice")

    assert list(Seat.objects.filter(pk__in=ids).order_by("pk").values()) == before
    assert SeatEvent.objects.count() == audit_before
    assert pushes == []
    assert not connection.in_atomic_block  # and the connection is usable for the next request
    monkeypatch.setattr(holds, "save_audit", save_audit)
    assert getattr(services, service)(seat_ids=ids, holder="alice").holder == "alice"


def test_services_refuse_to_run_inside_a_callers_transaction(seat_ids):
    """Durable: a service's commit is the one its answer reports, never a caller's later one."""
    from django.db import transaction

    with pytest.raises(RuntimeError, match="durable"), transaction.atomic():
        services.seats_lock(seat_ids=seat_ids[:1], holder="alice")
    assert Seat.objects.get(pk=seat_ids[0]).status == "available"
