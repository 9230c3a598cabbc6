"""``pgheal demo``: a throwaway cluster, pgheal installed, a migration healed before your eyes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import psycopg

from . import deploy, monitor, serverdeps
from .cluster import Cluster
from .runner import Migration, Runner

MIGRATION = """\
-- A migration as teams write it: it assumes a schema, citext, uuid-ossp and pg_trgm
-- that nobody set up in this database.
CREATE TABLE app.users (
    id         uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email      citext NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX users_name_trgm_idx ON app.users USING gin (name gin_trgm_ops);
INSERT INTO app.users (email, name) VALUES ('Ada@Example.com', 'Ada Lovelace');
"""

EVENTS_QUERY = """\
SELECT id, event_type, statement AS stmt, sqlstate, message, fix_sql
  FROM heal.build_events ORDER BY id"""

CHECK_QUERY = """\
SELECT id IS NOT NULL AS has_uuid, email = 'ada@example.com' AS case_insensitive,
       similarity(name, 'Ada Lovelase') AS trigram_similarity
  FROM app.users"""


#: Where the show goes: stdout, or stderr when stdout carries JSON.
_out: TextIO = sys.stdout


def _say(text: str) -> None:
    print(text, file=_out, flush=True)


def _psql(dsn: str, query: str) -> None:
    """Show a query's result the way an operator would see it in psql."""
    _say(f'\n$ psql -c "{" ".join(query.split())}"')
    if shutil.which("psql"):
        subprocess.run(["psql", "-X", "--pset=footer=off", dsn, "-c", query], check=True,
                       stdout=_out)  # fmt: skip
        return
    with psycopg.connect(dsn) as conn:
        for row in conn.execute(query):
            _say(" | ".join(str(v) for v in row))


def run(keep: bool = False, as_json: bool = False) -> int:
    """The demo; with `as_json`, the show goes to stderr and stdout gets its result."""
    global _out
    _out = sys.stderr if as_json else sys.stdout
    result: dict = {}
    try:
        code = _run(keep, result)
    finally:
        _out = sys.stdout
    if as_json:
        print(json.dumps(monitor.jsonable(result)))
    return code


def _run(keep: bool, result: dict) -> int:
    path, installed = serverdeps.install()
    if installed:
        _say(f"installed pglast for the server's Python in {path}")
    cluster = Cluster()
    _say(f"starting a throwaway PostgreSQL {cluster.version()} cluster in {cluster.root} ...")
    cluster.start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE demo")
        dsn = cluster.dsn("demo")
        with psycopg.connect(dsn, autocommit=True) as conn:
            report = deploy.install(conn, path)
        _say(
            f"installed pgheal {report.version} into database demo "
            f"(learned {report.extension_objects} objects from the server's extensions)\n"
        )
        _say("the migration:\n")
        _say("    " + MIGRATION.replace("\n", "\n    "))
        _say("$ pgheal migrate demo.sql")
        with psycopg.connect(dsn, autocommit=True) as conn:
            runner = Runner(conn, _out)
            outcomes = runner.run([Migration("demo", Path("demo.sql"), MIGRATION)])
            runner.summary(outcomes)
            events = monitor.events(conn, timedelta(days=1))
        ok = outcomes[0].status == "applied"
        result.update(ok=ok, outcomes=[o.__dict__ for o in outcomes], events=events)
        _psql(dsn, EVENTS_QUERY)
        if ok:
            _psql(dsn, CHECK_QUERY)
        if keep:
            _say(f"\nthe cluster keeps running:\n  psql '{dsn}'")
            _say(f"stop and remove it with:\n  {cluster.stop_command()}")
            result.update(dsn=dsn, stop_command=cluster.stop_command())
        return 0 if ok else 1
    finally:
        if not keep:
            cluster.stop()
            _say("\nstopped and removed the throwaway cluster")
