def test_health(anonymous, db):
    response = anonymous.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert {key: body.pop(key) for key in ("status", "database")} == {"status": "ok", "database": "ok"}
    # The other dependencies, each by its own state (tests/test_faults.py: when they are down).
    assert set(body) == {"cache", "channelLayer", "broker"} and set(body.values()) <= {"ok", "local"}
