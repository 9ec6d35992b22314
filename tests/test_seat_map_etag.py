"""Cheap reads of the seat map: its ETag changes with every change a reader can see (a write,
an expiry by time), If-None-Match gets 304 from one query that reads no seat, the body of an
unchanged map is kept for the next visitors, and it is gzipped for those who accept it."""

from __future__ import annotations

import gzip
import time

import orjson
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from booking import services
from booking.models import Seat, SeatEvent, SeatMapVersion

from .helpers import expire_hold, post

pytestmark = pytest.mark.django_db


def seat_map(client, event_id: int, etag: str | None = None, **headers):
    if etag is not None:
        headers["HTTP_IF_NONE_MATCH"] = etag
    return client.get(f"/api/events/{event_id}/seats", **headers)


def etag_of(client, event_id: int) -> str:
    response = seat_map(client, event_id)
    assert response.status_code == 200
    return response["ETag"]


def status_of(response_or_body, seat_id: int) -> str:
    body = getattr(response_or_body, "content", response_or_body)
    return next(seat["status"] for seat in orjson.loads(body) if seat["id"] == seat_id)


def seat_reads(queries) -> list[str]:
    """The statements that read seats' own columns (the map's query), not just count them."""
    return [q["sql"] for q in queries if "booking_seat" in q["sql"] and '"label"' in q["sql"]]


def test_the_seat_map_has_a_weak_etag_and_asks_every_time(anonymous, event, seat_ids):
    response = seat_map(anonymous, event.pk)
    assert response.status_code == 200
    assert response["ETag"].startswith('W/"') and response["ETag"].endswith('"')
    assert response["Cache-Control"] == "no-cache"
    assert "Accept-Encoding" in response["Vary"]
    assert [seat["id"] for seat in orjson.loads(response.content)] == seat_ids
    assert seat_map(anonymous, event.pk)["ETag"] == response["ETag"]  # nothing changed


def test_if_none_match_gets_304_from_one_query_that_reads_no_seat(anonymous, event, seat_ids):
    etag = etag_of(anonymous, event.pk)
    with CaptureQueriesContext(connection) as queries:
        response = seat_map(anonymous, event.pk, etag)
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert seat_reads(queries) == []
    # A list of tags, one of them current, is a match too; another tag is not.
    assert seat_map(anonymous, event.pk, f'W/"x", {etag}').status_code == 304
    assert seat_map(anonymous, event.pk, 'W/"1-2-3-4-5"').status_code == 200


def test_an_unknown_event_is_404(anonymous, event):
    response = seat_map(anonymous, event.pk + 1000, 'W/"x"')
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("change", ["lock", "extend", "unlock", "confirm", "cancel", "admin_release", "sweep"])
def test_every_seat_change_changes_the_etag(anonymous, alice, box_office, event, seat_ids, change):
    seat_id = seat_ids[3]
    if change != "lock":
        assert post(alice, "/api/lock", {"seatId": seat_id}).status_code == 200
    reference = None
    if change == "cancel":
        reference = post(alice, "/api/confirm", {"seatId": seat_id}).json()["booking"]["reference"]
    before = etag_of(anonymous, event.pk)

    if change in ("lock", "extend"):
        assert post(alice, "/api/lock", {"seatId": seat_id}).status_code == 200
    elif change in ("unlock", "confirm"):
        assert post(alice, f"/api/{change}", {"seatId": seat_id}).status_code == 200
    elif change == "cancel":
        assert post(alice, f"/api/bookings/{reference}/cancel", {}).status_code == 200
    elif change == "admin_release":
        assert services.seats_admin_release(seat_ids=[seat_id]).changed == [seat_id]
    elif change == "sweep":
        expire_hold(seat_id)  # the stored expiry moves; the map's tag moves with it (below)
        assert services.holds_release_expired() == 1

    response = seat_map(anonymous, event.pk, before)
    assert response.status_code == 200, change
    assert response["ETag"] != before
    expected = {"lock": "locked", "extend": "locked", "confirm": "booked"}.get(change, "available")
    assert status_of(response, seat_id) == expected
    assert seat_map(anonymous, event.pk, response["ETag"]).status_code == 304


def test_a_refused_write_leaves_the_etag(anonymous, alice, bob, event, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    before = etag_of(anonymous, event.pk)
    assert post(bob, "/api/lock", {"seatIds": [seat_ids[1], seat_ids[0]]}).status_code == 409
    assert seat_map(anonymous, event.pk, before).status_code == 304


def test_one_write_bumps_one_counter_row_per_event(anonymous, box_office, make_event, event, seat_ids):
    """A request over two events changes both maps' tags, one counter row each."""
    other = make_event(name="Other")
    other_seat = other.seats.order_by("pk").values_list("pk", flat=True)[0]
    before = (etag_of(anonymous, event.pk), etag_of(anonymous, other.pk))
    rows_before = SeatMapVersion.objects.count()
    response = post(box_office, "/api/lock", {"seatIds": [seat_ids[0], seat_ids[1], other_seat], "userId": "carol"})
    assert response.status_code == 200
    assert seat_map(anonymous, event.pk, before[0]).status_code == 200
    assert seat_map(anonymous, other.pk, before[1]).status_code == 200
    assert SeatMapVersion.objects.count() - rows_before <= 2


def test_an_expiry_by_time_changes_the_etag_before_any_write(anonymous, alice, event, seat_ids, monkeypatch):
    """A hold that runs out reads as available at once: the tag cannot wait for the sweep. Here
    the read's own release is off (as when the database is busy): the tag moves all the same."""
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    held = seat_map(anonymous, event.pk)
    assert status_of(held, seat_ids[0]) == "locked"
    monkeypatch.setattr(services, "holds_release_expired_if_any", lambda **kwargs: 0)
    expire_hold(seat_ids[0])  # time passes: no write records it
    response = seat_map(anonymous, event.pk, held["ETag"])
    assert response.status_code == 200
    assert status_of(response, seat_ids[0]) == "available"
    assert Seat.objects.get(pk=seat_ids[0]).status == "locked"  # nothing wrote it
    assert seat_map(anonymous, event.pk, response["ETag"]).status_code == 304


def test_the_read_releases_an_expired_hold_and_tags_the_map_after_it(anonymous, alice, event, seat_ids):
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    held = etag_of(anonymous, event.pk)
    expire_hold(seat_ids[0])
    response = seat_map(anonymous, event.pk, held)
    assert response.status_code == 200
    assert status_of(response, seat_ids[0]) == "available"
    assert SeatEvent.objects.filter(seat_id=seat_ids[0], action="expired").count() == 1
    # The tag given is the one after the release: asking with it costs one query again.
    with CaptureQueriesContext(connection) as queries:
        assert seat_map(anonymous, event.pk, response["ETag"]).status_code == 304
    assert len(queries) == 1


def test_seats_added_or_deleted_by_the_admin_change_the_etag(anonymous, admin_client, event, seat_ids):
    before = etag_of(anonymous, event.pk)
    services.seats_add_block(event=event, rows=["Z"], seats_per_row=2)
    added = etag_of(anonymous, event.pk)
    assert added != before
    response = admin_client.post(f"/admin/booking/seat/{seat_ids[-1]}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Seat.objects.filter(pk=seat_ids[-1]).exists()
    assert seat_map(anonymous, event.pk, added).status_code == 200


def test_best_available_block_unblock_and_a_layout_import_change_the_etag(anonymous, alice, box_office, event):
    from booking.layouts import read_layout
    from booking.services.layouts import seats_import_layout

    tags = [etag_of(anonymous, event.pk)]
    held = post(alice, "/api/lock", {"event": event.pk, "quantity": 2})
    assert held.status_code == 200, held.content
    tags.append(etag_of(anonymous, event.pk))
    free = Seat.objects.filter(event=event, status="available").order_by("pk").values_list("pk", flat=True)[0]
    assert post(box_office, "/api/block", {"seatId": free, "reason": "press"}).status_code == 200
    tags.append(etag_of(anonymous, event.pk))
    assert post(box_office, "/api/unblock", {"seatId": free}).status_code == 200
    tags.append(etag_of(anonymous, event.pk))
    seats_import_layout(event=event, seats=read_layout(b"section,row,number,category,accessible\nBalcony,A,1,C,no\n"))
    tags.append(etag_of(anonymous, event.pk))
    assert len(set(tags)) == len(tags), tags
    assert seat_map(anonymous, event.pk, tags[-1]).status_code == 304


def test_gzip_for_a_client_that_accepts_it(anonymous, event, seat_ids):
    plain = seat_map(anonymous, event.pk)
    zipped = seat_map(anonymous, event.pk, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert zipped.status_code == 200
    assert zipped["Content-Encoding"] == "gzip"
    assert "Content-Encoding" not in plain
    assert gzip.decompress(zipped.content) == plain.content
    assert len(zipped.content) < len(plain.content) / 4
    assert zipped["ETag"] == plain["ETag"]  # one weak tag for both encodings
    assert seat_map(anonymous, event.pk, plain["ETag"], HTTP_ACCEPT_ENCODING="gzip").status_code == 304


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_new_visitors_of_an_unchanged_map_read_no_seat(anonymous, alice, event, seat_ids, encoding):
    headers = {"HTTP_ACCEPT_ENCODING": encoding} if encoding else {}
    with CaptureQueriesContext(connection) as first_queries:
        first = seat_map(anonymous, event.pk, **headers)
    assert len(seat_reads(first_queries)) == 1
    with CaptureQueriesContext(connection) as queries:
        again = seat_map(anonymous, event.pk, **headers)  # a new visitor: no If-None-Match
    assert again.status_code == 200
    assert again.content == first.content
    assert len(queries) == 1 and seat_reads(queries) == []
    # After a change the kept body is not used: the next visitor reads the map again.
    post(alice, "/api/lock", {"seatId": seat_ids[0]})
    with CaptureQueriesContext(connection) as queries:
        changed = seat_map(anonymous, event.pk, **headers)
    assert len(seat_reads(queries)) == 1
    body = gzip.decompress(changed.content) if encoding else changed.content
    assert status_of(body, seat_ids[0]) == "locked"


def test_a_broken_cache_costs_a_read_not_the_answer(anonymous, event, seat_ids, monkeypatch):
    from booking.api import seat_map as module

    class Broken:
        def get(self, *args, **kwargs):
            raise ConnectionError("cache down")

        set = get

    monkeypatch.setattr(module, "cache", Broken())
    response = seat_map(anonymous, event.pk)
    assert response.status_code == 200
    assert len(orjson.loads(response.content)) == len(seat_ids)


def _race_writers_of_two_events(make_event, rounds: int) -> tuple[list[str], list[int]]:
    """10 writers lock and unlock a seat of each of two events (in either order in their
    requests) while a sweep runs, all at once: what failed, and each event's counter."""
    from .racing import race

    first, second = make_event(name="First"), make_event(name="Second")
    a = list(first.seats.order_by("pk").values_list("pk", flat=True))
    b = list(second.seats.order_by("pk").values_list("pk", flat=True))

    def writer(n: int):
        def run():
            outcomes = []
            for _ in range(rounds):
                seats = [a[n], b[n]] if n % 2 else [b[n], a[n]]
                for service in (services.seats_lock, services.seats_unlock):
                    try:
                        service(seat_ids=seats, holder=f"writer{n}")
                        outcomes.append("ok")
                    except Exception as exc:  # noqa: BLE001 - reported
                        outcomes.append(repr(exc))
            return outcomes

        return run

    def sweeper():
        return [services.holds_release_expired(workers=1) for _ in range(rounds)]

    results = race([writer(n) for n in range(10)] + [sweeper])
    failures = [outcome for outcomes in results[:-1] for outcome in outcomes if outcome != "ok"]
    totals = [
        sum(SeatMapVersion.objects.filter(event=event).values_list("version", flat=True)) for event in (first, second)
    ]
    return failures, totals


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("shards", [SeatMapVersion.SHARDS, 1])
def test_concurrent_writers_of_two_events_all_commit_and_every_write_counts_once(make_event, monkeypatch, shards):
    """No deadlock and no wait past the lock timeout (either would be 503 busy), with the
    counters spread over shards or all on one row per event; and each event's counter went
    up once per transaction that changed it (plus one for the seats it was created with)."""
    monkeypatch.setattr(SeatMapVersion, "SHARDS", shards)
    rounds = 4
    failures, totals = _race_writers_of_two_events(make_event, rounds)
    assert failures == []
    assert totals == [10 * rounds * 2 + 1] * 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_control_counters_bumped_in_no_fixed_order_deadlock(make_event, monkeypatch):
    """Shows the race test can fail: the same writers, with the counter rows bumped in a random
    order, on one shared row per event and without SKIP LOCKED, deadlock and answer busy."""
    import random

    from booking.services import pipeline, sql

    def bump_in_any_order(changed):
        shards = [(event_id, 0) for event_id in changed]
        random.shuffle(shards)
        with connection.cursor() as cursor:
            for shard in shards:
                cursor.execute(sql._BUMP_SEAT_MAP, list(shard))  # waits for a row another writer holds
                time.sleep(0.005)  # the window between the two rows' locks, as a longer write has

    monkeypatch.setattr(SeatMapVersion, "SHARDS", 1)
    monkeypatch.setattr(pipeline, "_bump", bump_in_any_order)
    failures, _ = _race_writers_of_two_events(make_event, rounds=2)
    assert failures and all("Busy" in failure for failure in failures)
