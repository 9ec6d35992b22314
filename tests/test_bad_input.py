"""Bad input gets a clear 4xx in the spec's shape: never a 500, never a partial change."""

import pytest

from booking.models import Seat, SeatEvent

from .helpers import assert_error, post

pytestmark = pytest.mark.django_db

BAD_BODIES = [
    {},
    {"seatId": "1"},
    {"seatId": 1.5},
    {"seatId": True},
    {"seatId": None},
    {"seatId": -1},
    {"seatId": 0},
    {"seatId": 2**63},
    {"seatId": 10**30},
    {"seatIds": []},
    {"seatIds": "1,2"},
    {"seatIds": [1, 1]},
    {"seatIds": [1, "2"]},
    {"seatIds": [[1]]},
    {"seatIds": [{"id": 1}]},
    {"seatIds": list(range(1, 102))},
    {"seatId": 1, "seatIds": [2]},
    {"seatId": 1, "userId": 7},
    {"seatId": 1, "userId": ""},
    {"seatId": 1, "userId": ["alice"]},
    {"seatId": 1, "userId": "x" * 151},
    [1, 2],
    "seat",
    17,
    None,
]


@pytest.mark.parametrize("path", ["/api/lock", "/api/confirm", "/api/unlock"])
@pytest.mark.parametrize("body", BAD_BODIES, ids=[repr(b)[:40] for b in BAD_BODIES])
def test_malformed_bodies_are_400_invalid(alice, seat_ids, path, body):
    assert_error(post(alice, path, body), 400, "invalid")
    assert not SeatEvent.objects.exists()
    assert not Seat.objects.exclude(status="available").exists()


@pytest.mark.parametrize("raw", [b"{bad json", b"", b"\xff\xfe", b'{"seatId": 1', b"[1,2"])
def test_malformed_json_is_400_invalid(alice, seat_ids, raw):
    response = alice.post("/api/lock", raw, content_type="application/json")
    assert_error(response, 400, "invalid")


def test_a_hundred_ids_are_allowed(alice, make_event, settings):
    settings.BOOKING_MAX_HOLDS = 100
    event = make_event(rows=["A"], seats_per_row=100)
    ids = list(event.seats.values_list("pk", flat=True))
    assert post(alice, "/api/lock", {"seatIds": ids}).status_code == 200


def test_the_error_explains_the_field(alice, seat_ids):
    body = assert_error(post(alice, "/api/lock", {"seatIds": [1, "x"]}), 400, "invalid")
    assert "seatIds" in body["detail"]
    body = assert_error(post(alice, "/api/lock", {"seatIds": [seat_ids[0], seat_ids[0]]}), 400, "invalid")
    assert "duplicate" in body["detail"]


def test_wrong_content_type_is_a_clear_4xx(alice, seat_ids):
    response = alice.post("/api/lock", "seatId=1", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "unsupported_media_type")


def test_wrong_method_is_405(alice):
    assert_error(alice.get("/api/lock"), 405, "method_not_allowed")
    assert_error(alice.delete("/api/seats"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "query", ["event=abc", "event=-1", "event=99999999999999999999999", "status=taken", "event=1.5", "status=LOCKED"]
)
def test_bad_query_parameters_are_400(anonymous, event, query):
    assert_error(anonymous.get(f"/api/seats?{query}"), 400, "invalid")


@pytest.mark.parametrize(
    "path", ["/api/events/0", "/api/events/999999", "/api/events/99999999999999999999", "/api/events/x", "/api/nope"]
)
def test_unknown_paths_and_events_are_json_404(anonymous, db, path):
    assert_error(anonymous.get(path), 404, "not_found")


def test_unknown_event_seat_map_is_404(anonymous, db):
    assert_error(anonymous.get("/api/events/424242/seats"), 404, "not_found")


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000, b'{"seatId": ' + b"9" * 400 + b"}", b'{"seatId": NaN}', b'{"seatId": Infinity}', b"\xc3\x28"],
    ids=["deeply-nested", "huge-integer", "nan", "infinity", "invalid-utf8"],
)
def test_pathological_json_is_400_invalid_never_500(alice, seat_ids, raw):
    response = alice.post("/api/lock", raw, content_type="application/json")
    assert_error(response, 400, "invalid")
    assert not SeatEvent.objects.exists()


def test_a_body_in_another_charset_is_parsed_in_that_charset(alice, seat_ids):
    body = f'{{"seatId": {seat_ids[0]}, "userId": "alice"}}'.encode("utf-16")
    response = alice.post("/api/lock", body, content_type="application/json; charset=utf-16")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "ascii", "cp1252", "utf-8", "UTF8"])
def test_deep_nesting_in_any_charset_is_400_invalid_never_500(alice, seat_ids, charset):
    """Outside UTF-8 the body went to the json module, which recursed into a RecursionError (500)."""
    body = ("[" * 100_000 + "]" * 100_000).encode(charset.replace("UTF8", "utf-8"))
    response = alice.post("/api/lock", body, content_type=f"application/json; charset={charset}")
    assert_error(response, 400, "invalid")


@pytest.mark.parametrize(
    ("charset", "raw"),
    [("rot13", b'{"seatId": 1}'), ("ascii", b'{"seatId": 1, "x": "\xe9"}'), ("utf-16", b'{"seatId": 1}')],
    ids=["not-a-text-encoding", "undecodable", "odd-length-utf16"],
)
def test_a_body_that_its_charset_cannot_decode_is_400_invalid(alice, seat_ids, charset, raw):
    response = alice.post("/api/lock", raw, content_type=f"application/json; charset={charset}")
    assert_error(response, 400, "invalid")
    assert not SeatEvent.objects.exists()


def test_an_unknown_charset_is_read_as_utf8(alice, seat_ids):
    """Django ignores a charset it does not know (the request's encoding stays the default)."""
    body = f'{{"seatId": {seat_ids[0]}}}'.encode()
    response = alice.post("/api/lock", body, content_type="application/json; charset=no-such-charset")
    assert response.status_code == 200, response.content


def test_a_latin1_body_is_parsed_as_latin1(box_office, seat_ids):
    body = f'{{"seatId": {seat_ids[0]}, "userId": "Zoë"}}'.encode("latin-1")
    response = box_office.post("/api/lock", body, content_type="application/json; charset=latin-1")
    assert response.status_code == 200, response.content
    assert response.json()["holder"] == "Zoë"
