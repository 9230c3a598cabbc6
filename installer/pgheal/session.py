"""Whose search_path a query runs on: pgheal's own queries on ``pg_catalog, pg_temp``,
the user's SQL on the path the session was given.

The CLI often runs as a superuser in a database some other role owns, and that owner
chooses the database's search_path (``ALTER DATABASE ... SET``). An unqualified name
in one of pgheal's queries (``now()``, ``=``, ``to_regclass``) would then resolve to
whatever the owner put first on it, and run with the superuser's rights. So every
connection pgheal opens starts on its own path; a migration's statements, which
expect the database's path, get the session's original one only while they run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from weakref import WeakKeyDictionary

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

OWN_PATH = "pg_catalog, pg_temp"
_SET = "SELECT pg_catalog.set_config('search_path', %s, false)"
#: The path the user's SQL left, read, and pgheal's taken back, in one query: the
#: subquery is evaluated first. Nothing unqualified: it runs on the path it leaves.
_LEAVE = f"""SELECT s.given, pg_catalog.set_config('search_path', '{OWN_PATH}', false)
  FROM (SELECT pg_catalog.current_setting('search_path') AS given OFFSET 0) AS s"""
#: The search_path each connection had when pgheal took it over.
_given: WeakKeyDictionary[psycopg.Connection, str] = WeakKeyDictionary()


def take(conn: psycopg.Connection) -> psycopg.Connection:
    """Put `conn` on pgheal's own path, remembering the one it was given. Both queries
    are fully qualified: they run before the path is pgheal's."""
    _given[conn] = conn.execute("SELECT pg_catalog.current_setting('search_path')").fetchone()[0]
    conn.execute(_SET, (OWN_PATH,))
    return conn


@contextmanager
def users_path(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """Run the user's SQL on the path the session was given, then go back to pgheal's."""
    given = _given.get(conn)
    if given is None:  # not taken over: it is on the user's path already
        yield conn
        return
    conn.execute(_SET, (given,))
    try:
        yield conn
    finally:
        if not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:
            # The path as the user's SQL left it (a migration's SET, or its heal) is
            # the one the next migration runs on, as in one psql session.
            _given[conn] = conn.execute(_LEAVE).fetchone()[0]


@contextmanager
def users_path_pipelined(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """:func:`users_path` in one round trip: the path set, the statements the caller
    queues, the path as they leave it read and pgheal's set back, all in one pipeline.
    Its statements share one implicit transaction, so a failure takes the path change
    back with everything else: the session stays on pgheal's path. What the caller
    queues must be fully qualified, as if on any path."""
    given = _given.get(conn)
    with conn.pipeline():
        if given is not None:
            conn.execute(_SET, (given,))
        yield conn
        if given is not None:
            left = conn.execute(_LEAVE)
    if given is not None:
        _given[conn] = left.fetchone()[0]


def own_conninfo(dsn: str, **changes: str) -> str:
    """`dsn` with `changes`, for a connection only pgheal's own queries use (pg_cron's
    database, a database a job names): it starts on pgheal's own path, whatever that
    database's owner set, keeping the user's other options."""
    given = conninfo_to_dict(dsn).get("options") or os.environ.get("PGOPTIONS", "")
    options = f"{given} -c search_path=pg_catalog,pg_temp".strip()
    return make_conninfo(dsn, options=options, **changes)
