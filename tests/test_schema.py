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
        "/api/me/seats",
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
                "too_many_holds",
                "throttled",
                "busy",
            },
        ),
        ("/api/confirm", {"invalid", "seat_booked", "hold_expired", "not_locked_by_you", "busy"}),
        ("/api/unlock", {"invalid", "seat_booked", "not_locked_by_you", "busy"}),
    ],
)
def test_every_error_code_is_documented(anonymous, path, codes):
    responses = schema(anonymous)["paths"][path]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "409", "429", "503"} <= set(responses)
    text = yaml.safe_dump(responses)
    for code in codes:
        assert code in text


def test_docs_page_uses_local_assets(anonymous):
    page = anonymous.get("/api/docs").content.decode()
    assert "swagger-ui" in page
    assert "cdn" not in page.lower() and "//unpkg" not in page
    asset = next(part.split('"')[0] for part in page.split('src="')[1:] if "swagger-ui" in part)
    assert asset.startswith("/static/")
    assert anonymous.get(asset).status_code == 200
