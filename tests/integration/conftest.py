"""A real cluster for the integration tests: PL/Python, pg_cron, pgheal installed.

One throwaway cluster per session (run as ``postgres`` when the suite runs as root);
pytest-postgresql clones a template database with pgheal installed for every test.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from pytest_postgresql import factories

from pgheal import deploy, serverdeps
from pgheal.cluster import Cluster


@pytest.fixture(scope="session", autouse=True)
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    started = Cluster().start()
    option = request.config.option
    option.postgresql_host = str(started.socket_dir)
    option.postgresql_port = started.port
    option.postgresql_user = "postgres"
    yield started
    started.stop()


def install_pgheal(host: str, port: int, user: str, dbname: str, **_: object) -> None:
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, autocommit=True) as c:
        deploy.install(c, serverdeps.default_path())


heal_proc = factories.postgresql_noproc(dbname="pgheal_test", load=[install_pgheal])
postgresql = factories.postgresql("heal_proc")


@pytest.fixture
def conn(postgresql: psycopg.Connection) -> psycopg.Connection:
    """The test database, autocommit like psql: CALL runs at top level."""
    postgresql.autocommit = True
    return postgresql


@pytest.fixture
def dsn(conn: psycopg.Connection) -> str:
    info = conn.info
    return f"host={info.host} port={info.port} dbname={info.dbname} user={info.user}"


def connect(dsn: str, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True, **kwargs)


@pytest.fixture
def app_role(conn: psycopg.Connection) -> str:
    """A login role, not a superuser, that may create in schema public."""
    name = f"app_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {name} LOGIN")
    conn.execute(f"GRANT CREATE ON SCHEMA public TO {name}")
    return name


def role_dsn(dsn: str, role: str) -> str:
    """`dsn`, logging in as `role`."""
    return dsn.replace("user=postgres", f"user={role}")


def migrate(conn: psycopg.Connection, sql: str | None) -> list[str]:
    """CALL heal.migrate; return the notices it sent."""
    notices: list[str] = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    conn.execute("CALL heal.migrate(%s)", (sql,))
    return notices


def psql(dsn: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", dsn, *args],
        input=input,
        capture_output=True,
        text=True,
    )


def scalar(conn: psycopg.Connection, query: str, params: tuple | None = None) -> object:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def events(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT event_type, statement, sqlstate, fix_sql FROM heal.build_events ORDER BY id"
    ).fetchall()


def extensions(conn: psycopg.Connection) -> dict[str, str]:
    rows = conn.execute(
        "SELECT extname, extnamespace::regnamespace::text FROM pg_extension"
    ).fetchall()
    return dict(rows)
