"""Small assertions shared by the test modules."""

import io
from dataclasses import dataclass

import orjson

from booking.models import Seat, SeatEvent


def post(client, path, body):
    return client.post(path, body, format="json")


def assert_error(response, status: int, code: str, seats: list[int] | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert set(body) <= {"code", "detail", "seats"}
    if seats is not None:
        assert body["seats"] == seats
    return body


def seat(seat_id: int) -> Seat:
    return Seat.objects.get(pk=seat_id)


def audit_actions(seat_id: int) -> list[tuple[str, str]]:
    """The seat's audit trail, oldest first, as (action, holder)."""
    return list(SeatEvent.objects.filter(seat_id=seat_id).order_by("created_at", "id").values_list("action", "holder"))


def expire_hold(*seat_ids: int) -> None:
    """Move holds' expiry into the past (as if their time had run out)."""
    from datetime import timedelta

    from django.db.models import F

    Seat.objects.filter(pk__in=seat_ids).update(
        lock_expires_at=F("lock_expires_at") - timedelta(hours=1), locked_at=F("locked_at") - timedelta(hours=1)
    )


@dataclass
class Answer:
    status: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return orjson.loads(self.body)


def wsgi_post(app, path: str, body=None, *, token: str | None = None, raw: bytes | None = None, **extra) -> Answer:
    """POST ``body`` as JSON (or ``raw`` bytes) to a WSGI application, as a server would; ``extra``
    sets or overrides environ keys."""
    content = raw if raw is not None else orjson.dumps(body)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(content)),
        "wsgi.input": io.BytesIO(content),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Token {token}"
    environ.update(extra)
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = status, headers

    chunks = app(environ, start_response)
    try:
        content = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    headers: dict[str, str] = {}
    for name, value in started["headers"]:
        name = name.lower()
        assert name == "set-cookie" or name not in headers, f"a header twice: {started['headers']}"
        headers[name] = f"{headers[name]}\n{value}" if name in headers else value
    return Answer(started["status"], headers, content)
