"""DRF's token authentication: one precompiled query, its answer kept for a moment.

The ORM's ``Token.objects.select_related("user").get(key=…)`` is rebuilt and
compiled on every request and cost more CPU than the rest of a lock request's
queries together; this is the same lookup (same join, same checks, same
errors) as one SQL statement built once per process, and on PostgreSQL
prepared once per connection (booking/pg.py).

Under load one client sends many requests a second, and the lookup was still
a fifth of a request's work and one of its three round trips. So each process
keeps a token's user for ``BOOKING_TOKEN_CACHE_SECONDS`` (2 s; 0 turns it
off). A token deleted, or a user changed or deactivated, in this process is
forgotten at once (signals); in another process (another app server, the
admin's) it still authenticates for at most those seconds. Unknown tokens are
never kept.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from .. import pg

#: Most tokens a process keeps at once; when full, the oldest entries go first.
TOKEN_CACHE_SIZE = 10_000

_statement: tuple[str, pg.Prepared | None, list[str]] | None = None


_statement_lock = threading.Lock()


def _user_query() -> tuple[str, pg.Prepared | None, list[str]]:
    """The lookup's SQL, its prepared form for PostgreSQL, and the user fields it returns."""
    global _statement
    if _statement is not None:
        return _statement
    with _statement_lock:  # the first requests of a process arrive on several threads at once
        if _statement is None:
            _statement = _build_user_query()
    return _statement


def _build_user_query() -> tuple[str, pg.Prepared | None, list[str]]:
    user_model = get_user_model()
    fields = user_model._meta.concrete_fields
    qn = connection.ops.quote_name
    columns = ", ".join(f"u.{qn(field.column)}" for field in fields)
    sql = (
        f"SELECT {columns} FROM {qn(Token._meta.db_table)} AS t"
        f" JOIN {qn(user_model._meta.db_table)} AS u ON u.{qn(user_model._meta.pk.column)} = t.{qn('user_id')}"
        f" WHERE t.{qn('key')} = %s"
    )
    prepared = None
    if connection.vendor == "postgresql":
        prepared = pg.Prepared("booking_token_user", sql.replace("= %s", "= %s::varchar"), ["varchar"])
    return sql, prepared, [field.attname for field in fields]


class _TokenCache:
    """Token key -> (user, token, expiry on the monotonic clock), for this process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[object, Token, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[object, Token] | None:
        entry = self._entries.get(key)
        if entry is None or entry[2] <= time.monotonic():
            return None
        return entry[0], entry[1]

    def put(self, key: str, user, token: Token, seconds: float) -> None:
        with self._lock:
            if len(self._entries) >= TOKEN_CACHE_SIZE:
                now = time.monotonic()
                self._entries = {k: v for k, v in self._entries.items() if v[2] > now}
                while len(self._entries) >= TOKEN_CACHE_SIZE:  # dicts keep insertion order: oldest first
                    del self._entries[next(iter(self._entries))]
            self._entries[key] = (user, token, time.monotonic() + seconds)

    def clear(self, **kwargs) -> None:
        """Forget every token (a signal receiver: a token or a user changed in this process)."""
        with self._lock:
            self._entries = {}


token_cache = _TokenCache()


def plain_token_key(meta) -> str | None:
    """The key of a plain ``Authorization: Token <key>`` header in a request's META (or WSGI
    environ); None for anything else (DRF's to judge)."""
    parts = meta.get("HTTP_AUTHORIZATION", "").split()
    if len(parts) == 2 and parts[0].lower() == "token" and parts[1].isascii():
        return parts[1]
    return None


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate(self, request):
        # The plain header, read from META: DRF's own reading builds the request's whole
        # header dictionary first. Anything else is DRF's to judge.
        key = plain_token_key(request.META)
        if key is not None:
            return self.authenticate_credentials(key)
        return super().authenticate(request)

    def authenticate_credentials(self, key):
        cached = token_cache.get(key)
        if cached is not None:
            return cached
        user, token = self._look_up(key)
        seconds = getattr(settings, "BOOKING_TOKEN_CACHE_SECONDS", 0)
        if seconds > 0:
            token_cache.put(key, user, token, seconds)
        return user, token

    def _look_up(self, key):
        sql, prepared, attnames = _user_query()
        if prepared is not None:
            (rows,) = pg.run([(prepared, [key])])
            row = rows[0] if rows else None
        else:
            with connection.cursor() as cursor:
                cursor.execute(sql, [key])
                row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        user = get_user_model().from_db(connection.alias, attnames, row)
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return user, Token(key=key, user=user)
