"""Deploy, upgrade and remove pgheal in a database, each in one transaction.

SQL lives in ``sql/``: ``incremental/`` files run once each and are recorded in
``heal.installed_scripts``; ``idempotent/`` files (functions, defaults, grants)
run on every install. Both run in file-name order.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg

from heal import PGLAST_VERSION, __version__
from heal.reasons import KINDS

from . import serverdeps
from .problems import CommandError

MIN_SERVER_VERSION = 150000
_HISTORY = """CREATE TABLE IF NOT EXISTS heal.installed_scripts (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class InstallError(CommandError):
    """A prerequisite is missing; the message says what and how to get it."""


@dataclass(frozen=True)
class Report:
    version: str
    scripts_applied: list[str]
    extension_objects: int
    pglast: str
    upgraded_from: str | None
    adopted: str | None = None


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
        adopted = _adopt_history(conn) if previous is None else None  # new installs only
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
    return Report(__version__, applied, objects, info["pglast"], previous, adopted)


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
    here = Path(python_path)
    if not info.get("path_readable") and (here / "pglast").is_dir():
        # pglast is there, for this user: the server's OS user cannot get to it.
        closed = [d for d in (here, *here.parents) if not d.stat().st_mode & 0o001]
        fix = (
            f"`chmod o+x {' '.join(shlex.quote(str(d)) for d in reversed(closed))}` (as their "
            "owner), then run this command again"
            if closed
            else f"make {python_path} readable by it"
        )
        version = serverdeps.installed_version(here) or "?"
        raise InstallError(
            f"the server runs as OS user {info.get('os_user')}, which cannot read "
            f"{python_path} (where pglast {version} is): {fix}; or install "
            f"pglast where it can (as root): `pgheal server-deps --target "
            f"{serverdeps.SYSTEM_PATH}`, and pass --python-path {serverdeps.SYSTEM_PATH}"
        )
    raise InstallError(
        f"the server's Python ({info.get('python')}) cannot import pglast {PGLAST_VERSION} "
        f"from {python_path}: {problem}. On the database host, run "
        f"`pgheal server-deps --target {python_path}` (as a user who can write there), "
        "or pass --python-path with the directory that has it."
    )


#: The history a reinstall needs: which migrations ran, and their scripts.
HISTORY_TABLES = ("migrations", "migration_scripts")
KEPT = "heal_history"


def _keep_history(conn: psycopg.Connection) -> str:
    """Move the migration history out of schema heal, into a schema only superusers
    can write, for the next install to adopt."""
    if conn.execute("SELECT to_regnamespace(%s)", (KEPT,)).fetchone()[0]:
        raise InstallError(
            f'schema "{KEPT}" exists already, so the history cannot be kept there: '
            f"drop it (DROP SCHEMA {KEPT} CASCADE, after checking it), or uninstall with "
            "--drop-history"
        )
    runs = conn.execute("SELECT count(*) FROM heal.migrations").fetchone()[0]
    conn.execute(f"CREATE SCHEMA {KEPT}")
    conn.execute(
        f"COMMENT ON SCHEMA {KEPT} IS 'pgheal''s migration history, kept by pgheal uninstall: "
        "the next pgheal install adopts it'"
    )
    conn.execute(f"REVOKE ALL ON SCHEMA {KEPT} FROM PUBLIC")
    for table in HISTORY_TABLES:
        conn.execute(f"REVOKE ALL ON heal.{table} FROM PUBLIC, heal_operator")
        conn.execute(f"ALTER TABLE heal.{table} SET SCHEMA {KEPT}")
    return (f"the migration history ({runs} runs) is kept in schema {KEPT}: the next pgheal "
            f"install adopts it (uninstall --drop-history removes it)")  # fmt: skip


def _adopt_history(conn: psycopg.Connection) -> str | None:
    """Take the history an uninstall kept back into schema heal, if one is there and
    only superusers could have written it."""
    owner = conn.execute(
        "SELECT r.rolname, r.rolsuper FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r "
        "ON r.oid = n.nspowner WHERE n.nspname = %s", (KEPT,)).fetchone()  # fmt: skip
    if owner is None:
        return None
    if not owner[1]:  # an uninstall makes it as a superuser: this one is somebody else's
        return (f'schema "{KEPT}" belongs to role "{owner[0]}", not to a superuser: it is not '
                "a history pgheal kept, and was left alone")  # fmt: skip
    untrusted = conn.execute(
        """SELECT c.relname FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
            WHERE c.relnamespace = %s::regnamespace
              AND (c.relkind NOT IN ('r', 'S', 'i') OR NOT o.rolsuper
                   OR EXISTS (SELECT FROM pg_catalog.aclexplode(c.relacl) a
                               WHERE a.grantee <> c.relowner)
                   OR EXISTS (SELECT FROM pg_catalog.pg_attribute t,
                                          pg_catalog.aclexplode(t.attacl) a
                               WHERE t.attrelid = c.oid AND a.grantee <> c.relowner))
            UNION ALL
           SELECT 'schema' FROM pg_catalog.pg_namespace n
             JOIN pg_catalog.pg_roles o ON o.oid = n.nspowner
            WHERE n.nspname = %s AND (NOT o.rolsuper OR EXISTS (
                  SELECT FROM pg_catalog.aclexplode(n.nspacl) a
                   WHERE a.grantee <> n.nspowner AND a.privilege_type = 'CREATE'))""",
        (KEPT, KEPT),
    ).fetchall()
    triggers = conn.execute(
        "SELECT count(*) FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c "
        "ON c.oid = t.tgrelid WHERE c.relnamespace = %s::regnamespace AND NOT t.tgisinternal",
        (KEPT,),
    ).fetchone()[0]
    if untrusted or triggers:
        raise InstallError(
            f'schema "{KEPT}" holds a kept migration history, but a role other than a '
            "superuser could have written it (an owner, a privilege, a trigger or an object "
            f"that an uninstall does not leave there): {', '.join(r[0] for r in untrusted)}. "
            f"Check it, then drop it (DROP SCHEMA {KEPT} CASCADE) or fix its owner and grants."
        )
    if conn.execute("SELECT count(*) FROM heal.migrations").fetchone()[0]:
        raise InstallError(
            f'schema "{KEPT}" holds a kept migration history, and heal.migrations has runs '
            f"of its own: pgheal adopts a kept history only into a new install. Drop one of "
            f"them (DROP SCHEMA {KEPT} CASCADE drops the kept one)."
        )
    adopted = 0
    for table in HISTORY_TABLES:
        if not conn.execute("SELECT to_regclass(%s)", (f"{KEPT}.{table}",)).fetchone()[0]:
            continue
        columns = [r[0] for r in conn.execute(
            """SELECT a.attname FROM pg_catalog.pg_attribute a
                WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
                  AND EXISTS (SELECT FROM pg_catalog.pg_attribute b
                               WHERE b.attrelid = %s::regclass AND b.attname = a.attname
                                 AND NOT b.attisdropped)
                ORDER BY a.attnum""",
            (f"{KEPT}.{table}", f"heal.{table}"),
        )]  # fmt: skip
        if not columns:
            raise InstallError(
                f"{KEPT}.{table} has none of heal.{table}'s columns: it is not a history "
                f"pgheal kept. Check it, then drop it (DROP SCHEMA {KEPT} CASCADE)"
            )
        names = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        moved = conn.execute(
            f"INSERT INTO heal.{table} ({names}) SELECT {names} FROM {KEPT}.{table}"
        ).rowcount
        adopted += moved if table == "migrations" else 0
    conn.execute(
        "SELECT setval(pg_get_serial_sequence('heal.migrations', 'id'), "
        "greatest((SELECT max(id) FROM heal.migrations), 1))"
    )
    conn.execute(f"DROP SCHEMA {KEPT} CASCADE")
    return f"adopted the migration history kept in schema {KEPT}: {adopted} runs"


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


def uninstall(conn: psycopg.Connection, keep_history: bool = True) -> list[str]:
    """Remove pgheal's objects and nothing else; return what happened, line by line.

    Extensions and schemas pgheal created for migrations stay: they belong to the
    user's schema now. The migration history stays too, unless `keep_history` is
    false: without it, every migration would run again after a reinstall. It is
    moved to schema heal_history, which the next install adopts.
    """
    dbname = conn.info.dbname
    notes = [f"pgheal removed from database {dbname}"]
    with conn.transaction():
        if not conn.execute("SELECT to_regnamespace('heal')").fetchone()[0]:
            return [f"pgheal is not installed in database {dbname}: nothing to remove"]
        conn.execute("DROP EVENT TRIGGER IF EXISTS heal_ddl_log")
        conn.execute("DROP EVENT TRIGGER IF EXISTS heal_predict_ddl")
        joined = conn.execute(
            "SELECT string_agg(subname, ', ') FROM pg_catalog.pg_subscription "
            "WHERE subname ~ '^pgheal_' AND subdbid = (SELECT oid FROM pg_catalog.pg_database "
            "WHERE datname = pg_catalog.current_database())"
        ).fetchone()[0]
        if joined:
            raise InstallError(
                f"this database is in a learning network (subscriptions {joined}): run "
                "pgheal network leave (on each member of a hub) first"
            )
        members = conn.execute(
            "SELECT CASE WHEN pg_catalog.to_regclass('heal.network_members') IS NOT NULL "
            "THEN (SELECT count(*) FROM heal.network_members) END"
        ).fetchone()[0]
        if members:
            raise InstallError(
                f"this database is the hub of {members} members: run pgheal network leave on "
                "each (or pgheal network leave --dsn HUB --member ID) first"
            )
        conn.execute("DROP PUBLICATION IF EXISTS pgheal_shared, pgheal_network")
        users = dependents(conn)
        if users:
            raise InstallError(
                "these objects depend on pgheal and would be dropped with it: "
                + ", ".join(users)
                + ". Drop or change them first."
            )
        if keep_history:
            notes.append(_keep_history(conn))
        conn.execute("DROP SCHEMA heal CASCADE")
    try:
        with conn.transaction():
            conn.execute("DROP ROLE IF EXISTS heal_operator")
    except psycopg.errors.DependentObjectsStillExist:
        notes.append("role heal_operator was kept: pgheal is still installed in another database")
    return notes
