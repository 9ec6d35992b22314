"""The SQL written by hand: only what the ORM cannot say.

Each statement runs through Django's ``connection.cursor()`` (query logging,
``execute_wrapper``, error translation) inside the caller's ``atomic`` block.
"""

from __future__ import annotations

from django.db import connection, transaction

# A transaction-scoped advisory lock on the holder's name: the ORM has no word for
# advisory locks, and a holder is an opaque string with no row of its own to lock.
# Taken before any row lock, it cannot deadlock with them. The key's space (7) keeps
# these locks apart from any other use of advisory locks in the same database.
_LOCK_HOLDER = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))"


def lock_holder(holder: str) -> None:
    """Serialize one holder's lock requests until the transaction ends (PostgreSQL).

    Two requests of one holder for different seats would otherwise each count
    the holder's other holds before the other's commit, and both pass the hold
    limit. On SQLite the IMMEDIATE transaction already serializes every writer.
    """
    if connection.vendor != "postgresql":
        return
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError("lock_holder() must run inside atomic()")
    with connection.cursor() as cursor:
        cursor.execute(_LOCK_HOLDER, ["booking-holder:" + holder])
