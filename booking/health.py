"""What /api/health reports: the database, which decides 200 or 503, and the dependencies a
feature can live without (the cache, the channel layer, the broker), each by its own state.

Each check waits at most the dependency timeouts (settings DEPENDENCY_*), and a dependency
whose breaker is open is reported ``down`` without being asked (booking/dependencies.py).
States: ``ok``, ``down``, or ``local`` for one that lives in this process or on this machine
(local memory, the filesystem broker) and so has nothing to reach.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db import connection

from . import dependencies

_clients_lock = threading.Lock()


def database_state() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        return "unreachable"
    return "ok"


_clients: dict[tuple[str, str], redis.Redis] = {}


def _ping(url: str, connection_class: type[dependencies.GuardedConnection]) -> str:
    """PING through one client per URL and process, its connections guarded by the breaker."""
    key = (url, connection_class.__name__)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            pool = redis.ConnectionPool.from_url(
                url, connection_class=connection_class, max_connections=4, **dependencies.redis_options()
            )
            client = _clients[key] = redis.Redis(connection_pool=pool)
    try:
        client.ping()
    except dependencies.REDIS_ERRORS:
        return "down"
    return "ok"


def cache_state() -> str:
    backend = caches["default"]
    if not isinstance(backend, RedisCache):
        return "local"
    try:
        backend._cache.get_client(write=False).ping()  # type: ignore[attr-defined]  # Django's client
    except dependencies.REDIS_ERRORS:
        return "down"
    return "ok"


def channel_layer_state() -> str:
    layer: dict[str, Any] = settings.CHANNEL_LAYERS.get("default", {})
    if layer.get("BACKEND") != "channels_redis.core.RedisChannelLayer":
        return "local"
    host = layer["CONFIG"]["hosts"][0]
    return _ping(host["address"] if isinstance(host, dict) else host, dependencies.ChannelLayerConnection)


def broker_state() -> str:
    from config.celery import app

    url = app.conf.broker_url or ""
    if url.startswith(("filesystem://", "memory://")):
        return "local"
    if url.startswith(("redis://", "rediss://")):
        return _ping(url, dependencies.BrokerConnection)
    try:  # another transport (amqp://): one bounded connect, no retries
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.DEPENDENCY_CONNECT_TIMEOUT)
    except Exception as error:
        dependencies.broker.failed(error)
        return "down"
    return "ok"


def health() -> tuple[int, dict[str, str]]:
    """The status code (200 while the database answers, else 503) and the report."""
    database = database_state()
    report = {
        "status": "ok" if database == "ok" else "unavailable",
        "database": database,
        "cache": cache_state(),
        "channelLayer": channel_layer_state(),
        "broker": broker_state(),
    }
    return (200 if database == "ok" else 503), report
