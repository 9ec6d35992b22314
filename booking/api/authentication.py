"""DRF's token authentication with one precompiled query.

The ORM's ``Token.objects.select_related("user").get(key=…)`` is rebuilt and
compiled on every request and cost more CPU than the rest of a lock request's
queries together; this is the same lookup (same join, same checks, same
errors) as one SQL statement built once per process, and on PostgreSQL
prepared once per connection (booking/pg.py): planning the join cost the
database more than a booking's row locks.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from .. import pg

_statement: tuple[str, pg.Prepared | None, list[str]] | None = None


def _user_query() -> tuple[str, pg.Prepared | None, list[str]]:
    """The lookup's SQL, its prepared form for PostgreSQL, and the user fields it returns."""
    global _statement
    if _statement is None:
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
        _statement = (sql, prepared, [field.attname for field in fields])
    return _statement


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
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
