"""The OpenAPI schema documents every endpoint and error; the docs page works offline."""

import pytest
import yaml

pytestmark = pytest.mark.django_db


def schema(client) -> dict:
    response = client.get("/api/schema")
    assert response.status_code == 200
    return yaml.safe_load(response.content)


def test_every_endpoint_is_documented(anonymous):
    paths = schema(anonymous)["paths"]
    for path in [
        "/api/seats",
        "/api/events",
        "/api/events/{id}",
        "/api/events/{id}/seats",
        "/api/lock",
        "/api/confirm",
        "/api/unlock",
        "/api/block",
        "/api/unblock",
        "/api/me/seats",
        "/api/me/bookings",
        "/api/bookings/{reference}",
        "/api/bookings/{reference}/cancel",
        "/api/health",
    ]:
        assert path in paths, path


@pytest.mark.parametrize(
    "path,codes",
    [
        (
            "/api/lock",
            {
                "invalid",
                "not_authenticated",
                "forbidden",
                "seat_not_found",
                "seat_booked",
                "seat_locked",
                "seat_blocked",
                "too_many_holds",
                "no_seats_available",
                "throttled",
                "busy",
            },
        ),
        ("/api/block", {"invalid", "forbidden", "seat_not_found", "seat_booked", "seat_locked", "busy"}),
        ("/api/confirm", {"invalid", "seat_booked", "hold_expired", "not_locked_by_you", "busy"}),
        ("/api/unlock", {"invalid", "seat_booked", "not_locked_by_you", "busy"}),
        (
            "/api/bookings/{reference}/cancel",
            {"invalid", "booking_not_found", "seat_not_in_booking", "booking_cancelled", "cancel_window_closed"},
        ),
    ],
)
def test_every_error_code_is_documented(anonymous, path, codes):
    responses = schema(anonymous)["paths"][path]["post"]["responses"]
    assert {"200", "400", "401", "404", "409", "422", "429", "503"} <= set(responses)
    text = yaml.safe_dump(responses)
    for code in codes | {"idempotency_key_in_use", "idempotency_key_mismatch"}:
        assert code in text


@pytest.mark.parametrize(
    "path",
    ["/api/lock", "/api/confirm", "/api/unlock", "/api/block", "/api/unblock", "/api/bookings/{reference}/cancel"],
)
def test_every_write_documents_the_idempotency_key_and_a_replay(anonymous, path):
    operation = schema(anonymous)["paths"][path]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in operation["parameters"])
    assert "Idempotent-Replayed" in operation["responses"]["200"]["headers"]


def test_the_lock_documents_both_bodies_named_seats_and_best_available(anonymous):
    document = schema(anonymous)
    body = document["paths"]["/api/lock"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    forms = document["components"]["schemas"][body["$ref"].split("/")[-1]]["oneOf"]
    properties = [set(document["components"]["schemas"][f["$ref"].split("/")[-1]]["properties"]) for f in forms]
    assert {"seatId", "seatIds", "userId"} in properties
    assert {"event", "quantity", "category", "section", "together", "accessible", "userId"} in properties
    seat = document["components"]["schemas"]["Seat"]["properties"]
    assert {"section", "category", "accessible"} <= set(seat)
    assert "blocked" in yaml.safe_dump(seat["status"]) or "blocked" in yaml.safe_dump(document["components"])


def test_the_booking_reads_are_documented(anonymous):
    paths = schema(anonymous)["paths"]
    assert "booking_not_found" in yaml.safe_dump(paths["/api/bookings/{reference}"]["get"]["responses"])
    page = paths["/api/me/bookings"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    assert set(schema(anonymous)["components"]["schemas"][page.split("/")[-1]]["properties"]) == {
        "next",
        "previous",
        "results",
    }


def test_docs_page_uses_local_assets(anonymous):
    page = anonymous.get("/api/docs").content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "//unpkg" not in page
    asset = next(part.split('"')[0] for part in page.split('src="')[1:] if "swagger-ui" in part)
    assert asset.startswith("/static/")
    assert anonymous.get(asset).status_code == 200
