"""Deploy, upgrade and remove pgheal in a database, each in one transaction.

SQL lives in ``sql/``: ``incremental/`` files run once each and are recorded in
``heal.installed_scripts``; ``idempotent/`` files (functions, defaults, grants)
run on every install. Both run in file-name order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from heal import PGLAST_VERSION, __version__
from heal.reasons import KINDS

MIN_SERVER_VERSION = 150000
_HISTORY = """CREATE TABLE IF NOT EXISTS heal.installed_scripts (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class InstallError(Exception):
    """A prerequisite is missing; the message says what and how to get it."""


@dataclass(frozen=True)
class Report:
    version: str
    scripts_applied: list[str]
    extension_objects: int
    pglast: str
    upgraded_from: str | None


def _sql_dir() -> Path:
    """``sql/`` as packaged into a wheel (``pgheal/sql``), else the source tree's."""
    here = Path(__file__).resolve().parent
    packaged = here / "sql"
    return packaged if packaged.is_dir() else here.parents[1] / "sql"


def _sql_files(kind: str) -> list[tuple[str, str]]:
    return [(f.name, f.read_text()) for f in sorted((_sql_dir() / kind).glob("*.sql"))]


def _server_modules() -> list[tuple[str, str]]:
    """(module name, source) of the server package, as heal._load() imports them."""
    package = resources.files("heal")
    modules = []
    for f in sorted(package.iterdir(), key=lambda f: f.name):
        if f.name.endswith(".py"):
            stem = f.name[:-3]
            modules.append(("heal" if stem == "__init__" else f"heal.{stem}", f.read_text()))
    return modules


def check_prerequisites(conn: psycopg.Connection) -> None:
    """Stop with a message naming what is missing and how to get it."""
    version = conn.info.server_version
    if version < MIN_SERVER_VERSION:
        raise InstallError(f"PostgreSQL {version // 10000} is too old: pgheal needs 15 or newer.")
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    if not row or not row[0]:
        raise InstallError(
            f"role {conn.info.user!r} is not a superuser: pgheal installs PL/Python functions, "
            "which only a superuser can create. Connect as a superuser (e.g. postgres)."
        )
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'plpython3u'").fetchone()
    if not row:
        major = version // 10000
        raise InstallError(
            "the server has no PL/Python (extension plpython3u is not available). "
            f"On Debian/Ubuntu: apt-get install postgresql-plpython3-{major}"
        )


def _check_own_schema(conn: psycopg.Connection) -> None:
    """Refuse a schema heal that a role other than a superuser owns, or can create in.

    pgheal's routines run as a superuser (its event trigger, its SECURITY DEFINER
    functions) and call each other by name in schema heal: whoever controls that schema
    could replace one and run anything with those rights.
    """
    row = conn.execute(
        """SELECT r.rolname, r.rolsuper,
                  ARRAY(SELECT g.rolname FROM pg_catalog.aclexplode(n.nspacl) a
                          JOIN pg_catalog.pg_roles g ON g.oid = a.grantee
                         WHERE a.privilege_type = 'CREATE' AND a.grantee <> n.nspowner
                           AND NOT g.rolsuper) AS creators,
                  EXISTS (SELECT FROM pg_catalog.aclexplode(n.nspacl) a
                           WHERE a.privilege_type = 'CREATE' AND a.grantee = 0) AS public
             FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
            WHERE n.nspname = 'heal'"""
    ).fetchone()
    if row is None:
        return
    owner, superuser, creators, public = row
    if not superuser or creators or public:
        who = (
            f'it is owned by role "{owner}"'
            if not superuser
            else ("PUBLIC" if public else ", ".join(f'"{c}"' for c in creators))
            + " can create objects in it"
        )
        raise InstallError(
            f'schema "heal" exists and is not safe for pgheal: {who}. pgheal runs with a '
            "superuser's rights and calls its routines there by name. Drop the schema "
            "(DROP SCHEMA heal CASCADE, after checking what is in it), then install again."
        )


def install(conn: psycopg.Connection, python_path: str | Path) -> Report:
    """Deploy or upgrade schema ``heal``: all of it, or nothing."""
    check_prerequisites(conn)
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pgheal install'))")
        # pgheal's own DDL is not for its predictive trigger (from an earlier install).
        conn.execute("SELECT set_config('heal.fixing', 'on', true)")
        previous = _installed_version(conn)
        conn.execute("CREATE EXTENSION IF NOT EXISTS plpython3u")
        _check_own_schema(conn)
        conn.execute("CREATE SCHEMA IF NOT EXISTS heal")
        conn.execute("COMMENT ON SCHEMA heal IS 'pgheal: migrations that heal themselves'")
        conn.execute(_HISTORY)
        done = {r[0] for r in conn.execute("SELECT name FROM heal.installed_scripts")}
        for name, text in _sql_files("incremental"):
            if name in done:
                continue
            conn.execute(text)
            conn.execute(
                "INSERT INTO heal.installed_scripts (name, checksum) VALUES (%s, %s)",
                (name, hashlib.sha256(text.encode()).hexdigest()),
            )
            applied.append(name)
        _write_reason_kinds(conn)
        conn.execute("DELETE FROM heal.modules")  # and their compiled code, made again below
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO heal.modules (name, source) VALUES (%s, %s)", _server_modules()
            )
        conn.execute(
            """INSERT INTO heal.installation (version, python_path, installed_at, installed_by)
               VALUES (%s, %s, clock_timestamp(), current_user)
               ON CONFLICT (singleton) DO UPDATE
                  SET version = EXCLUDED.version, python_path = EXCLUDED.python_path,
                      installed_at = EXCLUDED.installed_at,
                      installed_by = EXCLUDED.installed_by""",
            (__version__, str(python_path)),
        )
        for _name, text in _sql_files("idempotent"):
            conn.execute(text)
        conn.execute("SELECT heal.compile_modules()")
        info = conn.execute("SELECT heal.server_info()").fetchone()[0]
        _check_server_python(info, python_path)
        objects = conn.execute("SELECT heal.refresh_extension_catalog(true)").fetchone()[0]
        if not conn.execute("SELECT count(*) FROM heal.log_intake").fetchone()[0]:
            conn.execute("SELECT heal.skip_log_backlog()")
    return Report(__version__, applied, objects, info["pglast"], previous)


def _write_reason_kinds(conn: psycopg.Connection) -> None:
    """heal.reason_kinds as the server package declares them (heal.reasons)."""
    rows = [(kind, label, text, n) for n, (kind, (label, text)) in enumerate(KINDS.items(), 1)]
    conn.execute("DELETE FROM heal.reason_kinds")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO heal.reason_kinds (kind, label, description, position) "
                        "VALUES (%s, %s, %s, %s)", rows)  # fmt: skip


def _installed_version(conn: psycopg.Connection) -> str | None:
    if not conn.execute("SELECT to_regclass('heal.installation')").fetchone()[0]:
        return None
    row = conn.execute("SELECT version FROM heal.installation").fetchone()
    return row[0] if row else None


def _check_server_python(info: dict, python_path: str | Path) -> None:
    found = info.get("pglast")
    where = info.get("pglast_path") or ""
    if found == PGLAST_VERSION and where.startswith(str(python_path)):
        return
    problem = (
        f"it has pglast {found} at {info.get('pglast_path')}"
        if found
        else info.get("error", "pglast is missing")
    )
    raise InstallError(
        f"the server's Python ({info.get('python')}) cannot import pglast {PGLAST_VERSION} "
        f"from {python_path}: {problem}. On the database host, run "
        f"`pgheal server-deps --target {python_path}` (as a user who can write there), "
        "or pass --python-path with the directory that has it."
    )


def dependents(conn: psycopg.Connection) -> list[str]:
    """Objects outside schema heal that depend on pgheal's objects."""
    rows = conn.execute(
        """SELECT DISTINCT pg_describe_object(d.classid, d.objid, 0)
             FROM pg_depend d
             JOIN LATERAL pg_identify_object(d.refclassid, d.refobjid, 0) AS ref
               ON ref.schema = 'heal'
            WHERE d.deptype IN ('n', 'a')
              AND 'heal'::regnamespace IS DISTINCT FROM CASE d.classid
                  WHEN 'pg_class'::regclass THEN
                       (SELECT relnamespace FROM pg_class WHERE oid = d.objid)
                  WHEN 'pg_proc'::regclass THEN
                       (SELECT pronamespace FROM pg_proc WHERE oid = d.objid)
                  WHEN 'pg_type'::regclass THEN
                       (SELECT typnamespace FROM pg_type WHERE oid = d.objid)
                  WHEN 'pg_rewrite'::regclass THEN
                       (SELECT c.relnamespace FROM pg_rewrite r
                          JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid)
                  WHEN 'pg_attrdef'::regclass THEN
                       (SELECT c.relnamespace FROM pg_attrdef a
                          JOIN pg_class c ON c.oid = a.adrelid WHERE a.oid = d.objid)
                  WHEN 'pg_trigger'::regclass THEN
                       (SELECT c.relnamespace FROM pg_trigger t
                          JOIN pg_class c ON c.oid = t.tgrelid WHERE t.oid = d.objid)
                  WHEN 'pg_constraint'::regclass THEN
                       (SELECT coalesce(c.relnamespace, k.connamespace) FROM pg_constraint k
                          LEFT JOIN pg_class c ON c.oid = k.conrelid WHERE k.oid = d.objid)
              END"""
    ).fetchall()
    return sorted(r[0] for r in rows)


def uninstall(conn: psycopg.Connection) -> list[str]:
    """Remove pgheal's objects and nothing else; return what happened, line by line.

    Extensions and schemas pgheal created for migrations stay: they belong to the
    user's schema now.
    """
    dbname = conn.info.dbname
    notes = [f"pgheal removed from database {dbname}"]
    with conn.transaction():
        if not conn.execute("SELECT to_regnamespace('heal')").fetchone()[0]:
            return [f"pgheal is not installed in database {dbname}: nothing to remove"]
        conn.execute("DROP EVENT TRIGGER IF EXISTS heal_ddl_log")
        conn.execute("DROP EVENT TRIGGER IF EXISTS heal_predict_ddl")
        users = dependents(conn)
        if users:
            raise InstallError(
                "these objects depend on pgheal and would be dropped with it: "
                + ", ".join(users)
                + ". Drop or change them first."
            )
        conn.execute("DROP SCHEMA heal CASCADE")
    try:
        with conn.transaction():
            conn.execute("DROP ROLE IF EXISTS heal_operator")
    except psycopg.errors.DependentObjectsStillExist:
        notes.append("role heal_operator was kept: pgheal is still installed in another database")
    return notes
