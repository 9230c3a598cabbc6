"""The corpus: real-style migrations that must heal, and ones that must not.

Every migration under ``tests/corpus/heal`` fails on plain ``psql -1 -f`` and must
succeed through ``heal.migrate``; every one under ``tests/corpus/fail`` must fail with
the expected message and leave the database exactly as it was. Each runs in a fresh
database cloned from the template with pgheal installed. Header comments configure a
case: ``-- setup: SQL`` (run first, as superuser), ``-- settings: name = value``,
``-- role: app|guest`` (run as a non-superuser with / without CREATE on the database)
and ``-- expect: text`` (in the error of a failing case).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

CORPUS = Path(__file__).parents[1] / "corpus"

STATE = """
SELECT 'schema ' || nspname FROM pg_namespace
 WHERE nspname NOT LIKE 'pg\\_%' AND nspname NOT IN ('information_schema', 'heal')
UNION ALL SELECT 'extension ' || extname || ' in ' || extnamespace::regnamespace FROM pg_extension
UNION ALL SELECT 'relation ' || oid::regclass FROM pg_class
 WHERE relnamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema', 'heal',
                                               'pg_toast')
UNION ALL SELECT 'routine ' || oid::regprocedure FROM pg_proc
 WHERE pronamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema', 'heal')
UNION ALL SELECT 'type ' || oid::regtype FROM pg_type
 WHERE typnamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema', 'heal',
                                               'pg_toast')
UNION ALL SELECT 'policy ' || polname || ' ' || coalesce(pg_get_expr(polqual, polrelid), '')
  FROM pg_policy
UNION ALL SELECT 'role ' || rolname FROM pg_roles WHERE rolname NOT LIKE 'corpus\\_%'
UNION ALL SELECT 'setting ' || array_to_string(setconfig, ',') FROM pg_db_role_setting
 WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
UNION ALL SELECT 'ts ' || dictname FROM pg_ts_dict
 WHERE dictnamespace::regnamespace::text <> 'pg_catalog'
ORDER BY 1
"""


@dataclass
class Case:
    path: Path
    sql: str
    setup: list[str] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)
    role: str | None = None
    expect: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> Case:
        case = cls(path, path.read_text())
        for line in case.sql.splitlines():
            if not line.startswith("-- "):
                break
            key, _, value = line[3:].partition(": ")
            if key == "setup":
                case.setup.append(value)
            elif key == "settings":
                name, _, setting = value.partition(" = ")
                case.settings[name] = setting
            elif key == "role":
                case.role = value
            elif key == "expect":
                case.expect.append(value)
        return case


def cases(kind: str) -> list[Case]:
    return [Case.load(p) for p in sorted((CORPUS / kind).glob("*.sql"))]


class Databases:
    """A fresh database per case, cloned from the template pgheal was installed into."""

    def __init__(self, proc, admin: psycopg.Connection) -> None:
        self.proc = proc
        self.admin = admin

    def dsn(self, name: str, user: str = "postgres") -> str:
        return f"host={self.proc.host} port={self.proc.port} dbname={name} user={user}"

    def fresh(self, case: Case) -> tuple[str, str]:
        name = f"corpus_{uuid.uuid4().hex[:10]}"
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE {self.proc.template_dbname}")
        user = "postgres"
        with psycopg.connect(self.dsn(name), autocommit=True) as conn:
            # "Plain psql" means without pgheal: its DDL trigger would heal psql too.
            conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'predictive'")
            for statement in case.setup:
                conn.execute(statement)
            for setting, value in case.settings.items():
                conn.execute(
                    "UPDATE heal.settings SET value = %s WHERE name = %s", (value, setting)
                )
            if case.role:
                user = f"corpus_{case.role}_{uuid.uuid4().hex[:6]}"
                conn.execute(f"CREATE ROLE {user} LOGIN IN ROLE heal_operator")
                conn.execute(f"GRANT CREATE ON SCHEMA public TO {user}")
                conn.execute(f"REVOKE CREATE ON DATABASE {name} FROM PUBLIC")
                if case.role == "app":
                    conn.execute(f"GRANT CREATE ON DATABASE {name} TO {user}")
        return name, user

    def drop(self, name: str) -> None:
        self.admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def state(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(STATE)]


@pytest.fixture
def databases(heal_proc, conn):
    return Databases(heal_proc, conn)


def test_corpus(databases, capsys):
    problems: list[str] = []
    heal_cases, fail_cases = cases("heal"), cases("fail")
    assert len(heal_cases) >= 40 and len(fail_cases) >= 12
    healed = _passed(databases, heal_cases, _heals, problems)
    refused = _passed(databases, fail_cases, _refuses, problems)
    predicted = 0
    for case in heal_cases:
        name, _user = databases.fresh(case)
        try:
            predicted += _heals_through_plain_psql(databases, name, case)
        finally:
            databases.drop(name)
    with capsys.disabled():
        print(
            f"\ncorpus: healed {healed}/{len(heal_cases)}, "
            f"refused cleanly {refused}/{len(fail_cases)}; "
            f"plain psql -1 -f with the DDL trigger on: {predicted}/{len(heal_cases)}"
        )
    assert not problems, "\n".join(problems)
    # DML, GRANT and COMMENT fire no ddl_command_start trigger: those need heal.migrate.
    assert predicted >= 35


def _passed(
    databases: Databases,
    cases_: list[Case],
    check: Callable[[Databases, str, str, Case], str | None],
    problems: list[str],
) -> int:
    """How many of `cases_` pass `check`, each in a fresh database; the others' problems."""
    passed = 0
    for case in cases_:
        name, user = databases.fresh(case)
        try:
            problem = check(databases, name, user, case)
        finally:
            databases.drop(name)
        passed += problem is None
        if problem:
            problems.append(f"{case.path.name}: {problem}")
    return passed


def _heals(databases: Databases, name: str, user: str, case: Case) -> str | None:
    dsn = databases.dsn(name, user)
    before = state(databases.dsn(name))
    plain = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(case.path), dsn],
        capture_output=True,
        text=True,
    )
    if plain.returncode == 0:
        return "plain psql did not fail: the case heals nothing"
    if state(databases.dsn(name)) != before:
        return "plain psql left changes behind"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CALL heal.migrate(%s)", (case.sql,))
            heals = conn.execute("SELECT heals FROM heal.migrations ORDER BY id DESC").fetchone()
    except psycopg.Error as exc:
        return f"heal.migrate failed: {exc}"
    return None if heals and heals[0] > 0 else "heal.migrate recorded no heal"


def _heals_through_plain_psql(databases: Databases, name: str, case: Case) -> bool:
    """The same migration from plain psql, healed by the predictive DDL trigger alone."""
    with psycopg.connect(databases.dsn(name), autocommit=True) as conn:
        conn.execute("UPDATE heal.settings SET value = 'on' WHERE name = 'predictive'")
    plain = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(case.path),
         databases.dsn(name, "postgres")],
        capture_output=True, text=True,
    )  # fmt: skip
    return plain.returncode == 0


def _refuses(databases: Databases, name: str, user: str, case: Case) -> str | None:
    before = state(databases.dsn(name))
    try:
        with psycopg.connect(databases.dsn(name, user), autocommit=True) as conn:
            conn.execute("CALL heal.migrate(%s)", (case.sql,))
    except psycopg.Error as exc:
        text = f"{exc.diag.message_primary}\n{exc.diag.message_detail}"
        missing = [e for e in case.expect if e not in text]
        if missing:
            return f"error does not say {missing}: {text}"
    else:
        return "heal.migrate succeeded"
    after = state(databases.dsn(name))
    if after != before:
        changed = sorted(set(after) ^ set(before))
        return f"the database changed: {changed}"
    return None
