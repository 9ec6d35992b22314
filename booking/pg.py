"""The API's hot path on PostgreSQL: prepared statements, one message per step.

Parsing and planning a small statement costs PostgreSQL more than running it.
So the hot path's statements are prepared (SQL ``PREPARE``) once per database
connection, on its first use, and afterwards run as ``EXECUTE name(...)``.
A step's statements travel in one message (simple protocol, statements
separated by ``;``) and run in order, each after the one before has finished
(and so after its row locks are granted): one round trip per step. psycopg's
own prepared statements would need its pipeline mode for that, which cost the
web server more CPU per request than the database saved.

:func:`transaction` makes one transaction of the steps inside it, on Django's
autocommit connection: its ``BEGIN`` travels with the first step's statements,
its ``COMMIT`` with the step that does the last write (``commit=True``).
Inside a Django ``atomic`` block (tests, the admin) the steps simply run in
that block's transaction.

``DATABASE_PREPARED_STATEMENTS=false`` sends the statements' text instead
(for a connection pooler that does not keep a session's prepared statements,
such as PgBouncer in transaction mode).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db import transaction as django_transaction
from psycopg.pq import ExecStatus

_TUPLES_OK = ExecStatus.TUPLES_OK
# Left to choose, PostgreSQL plans `id = ANY($1)` anew on every run (a custom plan for a
# one-element array looks cheaper than the generic one): the hot path's transactions run
# its statements on their one generic plan. For these transactions only: the session's
# other queries (the seat map's `event_id = $1`) need plans made for their values.
_GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"


class Prepared:
    """A statement prepared on each connection that runs it. ``sql`` has one ``%s`` per
    parameter, in order, each with a cast to its type (so that its text runs unprepared too)."""

    def __init__(self, name: str, sql: str, types: Sequence[str]):
        pieces = sql.split("%s")
        if len(pieces) - 1 != len(types):
            raise ValueError(f"{name}: {len(types)} types for {len(pieces) - 1} parameters")
        numbered = pieces[0] + "".join(f"${n}{piece}" for n, piece in enumerate(pieces[1:], start=1))
        self.name = name
        self.sql = " ".join(sql.split())
        self.prepare_sql = " ".join(f"PREPARE {name}({', '.join(types)}) AS {numbered.replace('%%', '%')}".split())
        self.execute_sql = f"EXECUTE {name}({', '.join(['%s'] * len(types))})" if types else f"EXECUTE {name}"
        with _registry_lock:
            known = next((statement for statement in _statements if statement.name == name), None)
            if known is None:
                _statements.append(self)
            elif known.prepare_sql != self.prepare_sql:
                raise ValueError(f"two different statements named {name}")


Step = Sequence[tuple["Prepared | str", Sequence[Any]]]

#: Every statement a session prepares, each name once (a second PREPARE of a name fails).
_statements: list[Prepared] = []
_registry_lock = threading.Lock()
#: How many of the statements (the first n) each psycopg connection's session has prepared.
_prepared_on: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def use_prepared_statements() -> bool:
    """Prepared statements pay off on a connection that outlives its request (persistent, or
    pooled); a connection per request (CONN_MAX_AGE=0, the ASGI server's) would prepare them
    for a single use."""
    if not getattr(settings, "DATABASE_PREPARED_STATEMENTS", True):
        return False
    database = connections.settings[DEFAULT_DB_ALIAS]
    return database.get("CONN_MAX_AGE", 0) != 0 or bool(database.get("OPTIONS", {}).get("pool"))


class _State:
    def __init__(self) -> None:
        self.begun = False
        self.committed = False
        self.after_commit: list[Callable[[], None]] = []

    def commit_done(self) -> None:
        self.committed = True
        callbacks, self.after_commit = self.after_commit, []
        for callback in callbacks:
            callback()


_local = threading.local()


@contextmanager
def transaction() -> Iterator[None]:
    """One transaction, begun by the first :func:`run` and committed by the one with
    ``commit=True``. Whatever else ends the block ends the transaction here: ROLLBACK on an
    exception (a broken rule, an error), COMMIT otherwise (a request that wrote nothing)."""
    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        yield
        return
    state = _State()
    _local.state = state
    try:
        yield
    except BaseException:
        _local.state = None
        if state.begun and not state.committed:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("ROLLBACK")
            except DatabaseError:  # a broken connection: Django replaces it after the request
                pass
        raise
    _local.state = None
    if state.begun and not state.committed:
        with connection.cursor() as cursor:
            cursor.execute("COMMIT")
    state.commit_done()


def on_commit(callback: Callable[[], None]) -> None:
    """Call ``callback`` once the current transaction has committed: at once if it has, never
    if it rolls back. Outside a :func:`transaction`, Django's ``on_commit``."""
    state: _State | None = getattr(_local, "state", None)
    if state is None:
        django_transaction.on_commit(callback)
    elif state.committed:
        callback()
    else:
        state.after_commit.append(callback)


def run(step: Step, *, commit: bool = False) -> list[list[tuple]]:
    """Run a step's statements (each a :class:`Prepared` or SQL text, with its parameters)
    in one message, in order; return each one's rows (``[]`` for a statement without rows).

    In a :func:`transaction`, the first step begins it and ``commit=True`` commits it after
    the statements. A database error comes out as Django's (``OperationalError`` for a
    lock wait that ran out, ...), and stops the statements after it.
    """
    state: _State | None = getattr(_local, "state", None)
    prepared = use_prepared_statements()
    parts, params = [], []
    for statement, values in step:
        if isinstance(statement, Prepared):
            parts.append(statement.execute_sql if prepared else statement.sql)
        else:
            parts.append(statement)
        params.extend(values)
    begin = state is not None and not state.begun
    opening = []
    if begin:
        opening.append("BEGIN")
        if prepared:
            opening.append(_GENERIC_PLANS)
    parts[:0] = opening
    if commit and state is not None:
        parts.append("COMMIT")
    # psycopg's cursor itself, with Django's error translation: Django's cursor wrapper, and
    # psycopg's `description` (a Column object per column, on every access), cost as much
    # as the rest of a step. (`connections[...]` once: each `connection.x` is a lookup.)
    db = connections[DEFAULT_DB_ALIAS]
    db.ensure_connection()
    if db.in_atomic_block:
        db.validate_no_broken_transaction()
    raw = db.connection
    with db.wrap_database_errors, raw.cursor() as cursor:
        if prepared and _prepared_on.get(raw, 0) != len(_statements):
            _prepare_session(raw, cursor)
        if begin:
            state.begun = True
        cursor.execute(";".join(parts), params)
        for _ in opening:
            cursor.nextset()
        results = []
        for _ in step:
            results.append(cursor.fetchall() if cursor.pgresult.status == _TUPLES_OK else [])
            cursor.nextset()
    if commit and state is not None:
        state.commit_done()
    return results


def _prepare_session(raw, cursor) -> None:
    """Prepare the statements this connection's session lacks (they outlive transactions,
    rolled back ones too, and last as long as the session)."""
    done = _prepared_on.get(raw, 0)
    cursor.execute(";".join(statement.prepare_sql for statement in _statements[done:]))
    _prepared_on[raw] = len(_statements)
