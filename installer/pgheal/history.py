"""Other tools' migration history: read as applied, and written in their own format.

A folder that a tool has applied keeps its history in that tool's table. Where the
table exists, ``pgheal migrate`` takes what it lists as applied, and records what it
applies there too, as the tool itself would (Flyway's checksum, Prisma's sha256,
golang-migrate's single version row, graphile-migrate's hash chain), so that
``flyway info``, ``dbmate status``, ``prisma migrate status`` or ``supabase
migration list`` agree with pgheal afterwards. ``heal.migrations`` keeps pgheal's own
record, with the heals, in every case.

The row is written right after the migration's own transaction commits; a run that
stopped between the two is mended the next time: a migration pgheal's record says is
applied, and the tool's table does not, is written there then.
"""

from __future__ import annotations

import hashlib
import re
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from . import session
from .layouts import Migration, SqitchChange, flyway_version
from .problems import CommandError

#: (applied, record): whether the tool's table lists a migration; write it there.
Applied = Callable[[Migration], bool]
Record = Callable[[Migration, int], None]


class HistoryError(CommandError):
    """A tool's history table pgheal will not read or write, named with the reason."""


@dataclass
class ToolHistory:
    """The history table of the tool a folder is laid out for, as it is now.

    Each look and each write runs in a transaction of its own, on pgheal's path
    (``pg_catalog, pg_temp``), with every table it touches locked and checked first
    (`_check`): the table is found on the session's path, as the tool finds it, and
    another role may have put one there.
    """

    tool: str
    table: str
    _applied: Applied
    _record: Record
    conn: psycopg.Connection
    #: every table the tool's history spans, qualified: the first is `table`
    tables: tuple[str, ...]

    def applied(self, migration: Migration) -> bool:
        with guarded(self.conn, self.tables):
            return self._applied(migration)

    def record(self, migration: Migration, ms: int) -> None:
        with guarded(self.conn, self.tables):
            self._record(migration, ms)


# -- finding the tables, and trusting them --------------------------------------------------------

#: What would let a role other than the runner run code or forge rows in pgheal's
#: session through the table: a view, foreign or partitioned table, child tables, a
#: trigger, a rule, an owner whose rights the runner lacks (a superuser's table is
#: always fine; a superuser's run needs one), and any function, operator, operator class
#: or type its columns, defaults, constraints, indexes or policies use whose owner the
#: same holds for. Run on pgheal's path only: it compares oids with operators.
_CHECK = """
WITH t AS (SELECT c.* FROM pg_catalog.pg_class c WHERE c.oid = %s::pg_catalog.regclass),
parts AS (
    SELECT 'pg_catalog.pg_class'::pg_catalog.regclass AS classid, t.oid AS objid FROM t
    UNION ALL SELECT 'pg_catalog.pg_attrdef'::pg_catalog.regclass, a.oid
      FROM pg_catalog.pg_attrdef a, t WHERE a.adrelid = t.oid
    UNION ALL SELECT 'pg_catalog.pg_constraint'::pg_catalog.regclass, k.oid
      FROM pg_catalog.pg_constraint k, t WHERE k.conrelid = t.oid
    UNION ALL SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, i.indexrelid
      FROM pg_catalog.pg_index i, t WHERE i.indrelid = t.oid
    UNION ALL SELECT 'pg_catalog.pg_policy'::pg_catalog.regclass, p.oid
      FROM pg_catalog.pg_policy p, t WHERE p.polrelid = t.oid),
used AS (
    SELECT d.refclassid, d.refobjid,
           CASE d.refclassid
             WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
               (SELECT f.proowner FROM pg_catalog.pg_proc f WHERE f.oid = d.refobjid)
             WHEN 'pg_catalog.pg_operator'::pg_catalog.regclass THEN
               (SELECT o.oprowner FROM pg_catalog.pg_operator o WHERE o.oid = d.refobjid)
             WHEN 'pg_catalog.pg_type'::pg_catalog.regclass THEN
               (SELECT y.typowner FROM pg_catalog.pg_type y WHERE y.oid = d.refobjid)
             WHEN 'pg_catalog.pg_opclass'::pg_catalog.regclass THEN
               (SELECT o.opcowner FROM pg_catalog.pg_opclass o WHERE o.oid = d.refobjid)
           END AS owner
      FROM pg_catalog.pg_depend d JOIN parts ON d.classid = parts.classid
                                            AND d.objid = parts.objid
     WHERE d.refclassid IN ('pg_catalog.pg_proc'::pg_catalog.regclass,
                            'pg_catalog.pg_operator'::pg_catalog.regclass,
                            'pg_catalog.pg_type'::pg_catalog.regclass,
                            'pg_catalog.pg_opclass'::pg_catalog.regclass))
SELECT t.relkind = 'r' AND NOT t.relhassubclass,
       pg_catalog.pg_has_role(t.relowner, current_user, 'USAGE'),
       pg_catalog.pg_get_userbyid(t.relowner),
       (SELECT pg_catalog.min(g.tgname) FROM pg_catalog.pg_trigger g
         WHERE g.tgrelid = t.oid AND NOT g.tgisinternal),
       (SELECT pg_catalog.min(r.rulename) FROM pg_catalog.pg_rewrite r WHERE r.ev_class = t.oid),
       (SELECT pg_catalog.min(pg_catalog.pg_describe_object(u.refclassid, u.refobjid, 0)
                              OPERATOR(pg_catalog.||) ' (owned by '
                              OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(u.owner)
                              OPERATOR(pg_catalog.||) ')')
          FROM used u WHERE NOT pg_catalog.pg_has_role(u.owner, current_user, 'USAGE')),
       current_user
  FROM t
"""


def resolve(conn: psycopg.Connection, name: str) -> str | None:
    """The qualified name of the table `name` means on the session's path (where the
    tool itself looks), checked; None when there is none."""
    # Only the name is looked up on the session's path, never an operator.
    with session.users_path(conn):
        oid = conn.execute("SELECT pg_catalog.to_regclass(%s)::pg_catalog.oid", (name,)
                           ).fetchone()[0]  # fmt: skip
    with conn.transaction():
        conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        if oid is None:
            return None
        qualified = conn.execute(
            "SELECT pg_catalog.format('%%I.%%I', n.nspname, c.relname) FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s::oid",
            (oid,)).fetchone()[0]  # fmt: skip
        _check(conn, qualified)
    return qualified


def _check(conn: psycopg.Connection, qualified: str) -> None:
    """Lock `qualified` (no one drops and replaces it while pgheal uses it), then refuse
    it unless nothing in it or on it can act in pgheal's session but the runner's own
    (`_CHECK`). On pgheal's path."""
    conn.execute(f"LOCK TABLE {qualified} IN ACCESS SHARE MODE")
    row = conn.execute(_CHECK, (qualified,)).fetchone()
    assert row is not None  # locked: it cannot have gone
    table, owner_ok, owner, trigger, rule, foreign, runner = row
    why = None
    if not table:
        why = "it is not a plain table without child tables"
    elif not owner_ok:
        why = (
            f"its owner {owner} has rights that role {runner} lacks (any code or row "
            f"{owner} put there would act as {runner}): run pgheal as {owner} (-U {owner})"
        )
    elif trigger is not None:
        why = f"it has trigger {trigger}, which would run in pgheal's session"
    elif rule is not None:
        why = f"it has rule {rule}, which would run in pgheal's session"
    elif foreign is not None:
        why = (f"it uses {foreign}, whose owner has rights that role {runner} lacks and "
               "would run in pgheal's session")  # fmt: skip
    if why is not None:
        raise HistoryError(f"{qualified}: not read or written as migration history: {why}")


@contextmanager
def guarded(conn: psycopg.Connection, tables: tuple[str, ...]) -> Iterator[None]:
    """A transaction on pgheal's path with `tables` locked and checked."""
    with conn.transaction():
        conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        for qualified in tables:
            _check(conn, qualified)
        yield


def has_column(conn: psycopg.Connection, table: str, column: str) -> bool:
    with conn.transaction():
        conn.execute("SET LOCAL search_path = pg_catalog, pg_temp")
        return bool(conn.execute(
        "SELECT pg_catalog.count(*) FROM pg_catalog.pg_attribute WHERE attrelid = %s::regclass "
        "AND attname = %s AND NOT attisdropped", (table, column)).fetchone()[0])  # fmt: skip


def _version(migration: Migration) -> str:
    """The leading digits of a migration's name: the version dbmate, golang-migrate,
    Supabase and Hasura key their rows by."""
    match = re.match(r"\d+", migration.name)
    return match.group(0) if match else migration.name


def flyway_checksum(text: str) -> int:
    """Flyway's checksum: CRC32 of the UTF-8 bytes of every line, line ends left out (a
    byte order mark on the first line too), as a signed 32-bit number."""
    text = text.removeprefix("\ufeff")
    crc = 0
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        crc = zlib.crc32(line.encode(), crc)
    return crc - (1 << 32) if crc >= 1 << 31 else crc


# -- one row per version: dbmate, Supabase, Hasura ------------------------------------------------


def _versions(conn: psycopg.Connection, table: str, tool: str, where: str = "") -> ToolHistory:
    def applied(migration: Migration) -> bool:
        return bool(conn.execute(
            f"SELECT count(*) FROM {table} WHERE version::text = %s {where}",
            (_version(migration),)).fetchone()[0])  # fmt: skip

    def record(migration: Migration, _ms: int) -> None:
        if tool == "supabase":
            version = _version(migration)
            conn.execute(f"INSERT INTO {table} (version, name) VALUES (%s, %s) "
                         "ON CONFLICT (version) DO NOTHING",
                         (version, migration.name[len(version) + 1 :]))  # fmt: skip
        elif tool == "hasura":
            conn.execute(f"INSERT INTO {table} (version, dirty) VALUES (%s, false) "
                         "ON CONFLICT (version) DO UPDATE SET dirty = false",
                         (int(_version(migration)),))  # fmt: skip
        else:
            conn.execute(f"INSERT INTO {table} (version) VALUES (%s) ON CONFLICT DO NOTHING",
                         (_version(migration),))  # fmt: skip

    return ToolHistory(tool, table, applied, record, conn, (table,))


# -- Hasura with config v3: a JSON map in hdb_catalog.hdb_version ------------------------------


def _hasura_database(migration: Migration) -> str:
    """The Hasura source a migration is for: config v3 keeps each source's migrations in
    ``migrations/<source>/``; config v2's ``migrations/`` is the one source, ``default``."""
    folder = migration.path.parent.parent.name
    return "default" if folder == "migrations" else folder


def _hasura_state(conn: psycopg.Connection, table: str) -> ToolHistory:
    """``cli_state`` is ``{"migrations": {<source>: {<version>: <dirty>}}, ...}``, one row."""

    def applied(migration: Migration) -> bool:
        return bool(conn.execute(
            f"SELECT count(*) FROM {table} WHERE cli_state -> 'migrations' -> %s ->> %s = 'false'",
            (_hasura_database(migration), _version(migration))).fetchone()[0])  # fmt: skip

    def record(migration: Migration, _ms: int) -> None:
        source = _hasura_database(migration)
        conn.execute(
            f"""UPDATE {table} SET cli_state = jsonb_set(
                    jsonb_set(cli_state, '{{migrations}}',
                              coalesce(cli_state -> 'migrations', '{{}}'::jsonb)),
                    ARRAY['migrations', %s],
                    coalesce(cli_state -> 'migrations' -> %s, '{{}}'::jsonb)
                        || jsonb_build_object(%s::text, false))""",
            (source, source, _version(migration)),
        )

    return ToolHistory("hasura", table, applied, record, conn, (table,))


def _hasura(conn: psycopg.Connection) -> ToolHistory | None:
    """Config v3 (Hasura v2 servers) keeps the state in ``hdb_version.cli_state``; config v2
    and older servers in ``hdb_catalog.schema_migrations``. Where both are, the one that
    lists migrations."""
    state = resolve(conn, "hdb_catalog.hdb_version")
    if state is not None and not has_column(conn, state, "cli_state"):
        state = None
    versions = resolve(conn, "hdb_catalog.schema_migrations")
    if state is not None and versions is not None:
        with guarded(conn, (state,)):
            listed = conn.execute(f"SELECT bool_or(cli_state ? 'migrations') FROM {state}"
                                  ).fetchone()[0]  # fmt: skip
        if not listed:
            state = None
    if state is not None:
        return _hasura_state(conn, state)
    return _versions(conn, versions, "hasura", "AND NOT dirty") if versions else None


# -- golang-migrate: one row, the version reached -------------------------------------------------


def _golang(conn: psycopg.Connection, table: str) -> ToolHistory:
    def reached() -> int | None:
        row = conn.execute(f"SELECT version, dirty FROM {table} LIMIT 1").fetchone()
        if row is None:
            return None
        return int(row[0]) - (1 if row[1] else 0)  # a dirty version is not applied

    def applied(migration: Migration) -> bool:
        version = reached()
        return version is not None and int(_version(migration)) <= version

    def record(migration: Migration, _ms: int) -> None:
        with conn.transaction():
            conn.execute(f"DELETE FROM {table}")
            conn.execute(f"INSERT INTO {table} (version, dirty) VALUES (%s, false)",
                         (int(_version(migration)),))  # fmt: skip

    return ToolHistory("golang-migrate", table, applied, record, conn, (table,))


# -- Flyway ---------------------------------------------------------------------------------------


def _flyway_parts(migration: Migration) -> tuple[str | None, str]:
    """(version as Flyway writes it, description) of a migration's file name."""
    match = re.match(r"^[VR](?P<version>\d+(?:[._]\d+)*)?__(?P<desc>.+)$", migration.name)
    assert match is not None
    version = match["version"].replace("_", ".") if match["version"] else None
    return version, match["desc"].replace("_", " ")


def _flyway(conn: psycopg.Connection, table: str) -> ToolHistory:
    def applied(migration: Migration) -> bool:
        version, description = _flyway_parts(migration)
        if version is None:  # repeatable: applied while its latest checksum is this one
            row = conn.execute(
                f"SELECT checksum FROM {table} WHERE version IS NULL AND description = %s "
                "AND success ORDER BY installed_rank DESC LIMIT 1",
                (description,),
            ).fetchone()
            return row is not None and row[0] == flyway_checksum(migration.text)
        rows = conn.execute(f"SELECT version FROM {table} WHERE success AND version IS NOT NULL"
                            ).fetchall()  # fmt: skip
        return any(flyway_version(v) == flyway_version(version) for (v,) in rows)

    def record(migration: Migration, ms: int) -> None:
        version, description = _flyway_parts(migration)
        conn.execute(
            f"""INSERT INTO {table} (installed_rank, version, description, type, script,
                                     checksum, installed_by, execution_time, success)
                SELECT coalesce(max(installed_rank), 0) + 1, %s, %s, 'SQL', %s, %s,
                       current_user, %s, true FROM {table}""",
            (version, description, migration.path.name, flyway_checksum(migration.text), ms),
        )

    return ToolHistory("flyway", table, applied, record, conn, (table,))


# -- Prisma ---------------------------------------------------------------------------------------


def _prisma(conn: psycopg.Connection, table: str) -> ToolHistory:
    def applied(migration: Migration) -> bool:
        return bool(conn.execute(
            f"SELECT count(*) FROM {table} WHERE migration_name = %s "
            "AND finished_at IS NOT NULL AND rolled_back_at IS NULL",
            (migration.name,)).fetchone()[0])  # fmt: skip

    def record(migration: Migration, _ms: int) -> None:
        checksum = hashlib.sha256(migration.path.read_bytes()).hexdigest()
        conn.execute(
            f"""INSERT INTO {table} (id, checksum, finished_at, migration_name, started_at,
                                     applied_steps_count)
                VALUES (%s, %s, now(), %s, now(), 1)""",
            (str(uuid.uuid4()), checksum, migration.name),
        )

    return ToolHistory("prisma", table, applied, record, conn, (table,))


# -- graphile-migrate: a hash chain; the last row says how far it got -----------------------------

_GRAPHILE_HEADER = re.compile(r"^--! (?P<key>[A-Z][a-zA-Z0-9_]*)(?::(?P<value>.*))?$")


def _graphile_header(text: str) -> dict[str, str]:
    header = {}
    for line in text.split("\n"):
        match = _GRAPHILE_HEADER.match(line)
        if match is None:
            break
        header[match["key"]] = (match["value"] or "").strip()
    return header


def _graphile(conn: psycopg.Connection, table: str) -> ToolHistory:
    def applied(migration: Migration) -> bool:
        row = conn.execute(f"SELECT filename FROM {table} ORDER BY filename DESC LIMIT 1"
                           ).fetchone()  # fmt: skip
        return row is not None and f"{migration.name}.sql" <= row[0]

    def record(migration: Migration, _ms: int) -> None:
        header = _graphile_header(migration.text)
        if "Hash" not in header:
            return  # not committed by graphile-migrate: it could not verify the row either
        previous = header.get("Previous")
        conn.execute(f"INSERT INTO {table} (hash, previous_hash, filename) VALUES (%s, %s, %s) "
                     "ON CONFLICT (hash) DO NOTHING",
                     (header["Hash"], None if previous in (None, "-") else previous,
                      f"{migration.name}.sql"))  # fmt: skip

    return ToolHistory("graphile-migrate", table, applied, record, conn, (table,))


# -- Sqitch: changes named by an id derived from the plan -----------------------------------------


def _sqitch_object(kind: str, lines: list[str]) -> str:
    """Sqitch's ids are git-style object hashes of an info block."""
    content = "\n".join(lines).encode()
    return hashlib.sha1(f"{kind} {len(content)}\0".encode() + content).hexdigest()


def sqitch_change_id(change: SqitchChange) -> str:
    """The id Sqitch gives a change: from its project, name, the change before it, its
    planner, date, dependencies and note (not from its script)."""
    lines = [f"project {change.project}"]
    if change.uri:
        lines.append(f"uri {change.uri}")
    lines.append(f"change {change.name}")
    if change.parent is not None:
        lines.append(f"parent {sqitch_change_id(change.parent)}")
    lines += [f"planner {change.planner} <{change.email}>", f"date {change.date}"]
    if change.requires:
        lines.append("requires\n  + " + "\n  + ".join(change.requires))
    if change.conflicts:
        lines.append("conflicts\n  - " + "\n  - ".join(change.conflicts))
    if change.note:
        lines += ["", change.note]
    return _sqitch_object("change", lines)


def _sqitch_tag_id(change: SqitchChange, change_id: str, tag: tuple) -> str:
    name, date, planner, email, note = tag
    lines = [f"project {change.project}"] + ([f"uri {change.uri}"] if change.uri else [])
    lines += [f"tag {name}", f"change {change_id}", f"planner {planner} <{email}>", f"date {date}"]
    return _sqitch_object("tag", lines + (["", note] if note else []))


#: The registry tables a deploy writes besides ``sqitch.changes``.
_SQITCH_TABLES = ("sqitch.projects", "sqitch.dependencies", "sqitch.tags", "sqitch.events")


def _sqitch(conn: psycopg.Connection, table: str) -> ToolHistory:
    found = [resolve(conn, name) for name in _SQITCH_TABLES]
    if None in found:
        missing = [name for name, q in zip(_SQITCH_TABLES, found, strict=True) if q is None]
        raise HistoryError(f"the Sqitch registry lacks {', '.join(missing)}: "
                           "run `sqitch deploy` once to complete it")  # fmt: skip
    projects, dependencies, tags, events = found

    def applied(migration: Migration) -> bool:
        assert migration.plan is not None
        return bool(conn.execute(f"SELECT count(*) FROM {table} WHERE change_id = %s",
                                 (sqitch_change_id(migration.plan),)).fetchone()[0])  # fmt: skip

    def record(migration: Migration, _ms: int) -> None:
        change = migration.plan
        assert change is not None
        change_id = sqitch_change_id(change)
        who = ("pgheal", "")
        planned = (change.date, change.planner, change.email)
        with conn.transaction():
            conn.execute(
                f"INSERT INTO {projects} (project, uri, creator_name, creator_email) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (change.project, change.uri, *who),
            )
            conn.execute(
                f"""INSERT INTO {table} (change_id, script_hash, change, project, note,
                        committer_name, committer_email, planned_at, planner_name, planner_email)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (change_id, hashlib.sha1(migration.path.read_bytes()).hexdigest(), change.name,
                 change.project, change.note, *who, *planned),
            )  # fmt: skip
            for dependency in change.requires:
                conn.execute(
                    f"""INSERT INTO {dependencies} (change_id, type, dependency, dependency_id)
                        SELECT %s, 'require', %s, c.change_id FROM {table} c
                         WHERE c.project = %s AND c.change = %s
                         ORDER BY c.committed_at DESC LIMIT 1""",
                    (change_id, dependency, change.project, dependency.split("@")[0]),
                )  # fmt: skip
            for dependency in change.conflicts:
                conn.execute(f"INSERT INTO {dependencies} VALUES (%s, 'conflict', %s, NULL)",
                             (change_id, dependency))  # fmt: skip
            for tag in change.tags:
                conn.execute(
                    f"""INSERT INTO {tags} (tag_id, tag, project, change_id, note,
                           committer_name, committer_email, planned_at, planner_name,
                           planner_email) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (_sqitch_tag_id(change, change_id, tag), tag[0], change.project, change_id,
                     tag[4], *who, tag[1], tag[2], tag[3]),
                )  # fmt: skip
            conn.execute(
                f"""INSERT INTO {events} (event, change_id, change, project, note, requires,
                       conflicts, tags, committer_name, committer_email, planned_at,
                       planner_name, planner_email)
                   VALUES ('deploy', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (change_id, change.name, change.project, change.note, list(change.requires),
                 list(change.conflicts), [t[0] for t in change.tags], *who, *planned),
            )  # fmt: skip

    return ToolHistory("sqitch", table, applied, record, conn, (table, *found))


# -- yoyo: rows keyed by the sha256 of the migration's id -----------------------------------------


def _yoyo(conn: psycopg.Connection, table: str) -> ToolHistory:
    log = resolve(conn, "_yoyo_log")

    def key(migration: Migration) -> str:
        return hashlib.sha256(migration.name.encode()).hexdigest()

    def applied(migration: Migration) -> bool:
        return bool(conn.execute(f"SELECT count(*) FROM {table} WHERE migration_hash = %s",
                                 (key(migration),)).fetchone()[0])  # fmt: skip

    def record(migration: Migration, _ms: int) -> None:
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} (migration_hash, migration_id, applied_at_utc) "
                         "VALUES (%s, %s, now() AT TIME ZONE 'utc')",
                         (key(migration), migration.name))  # fmt: skip
            if log is not None:
                conn.execute(
                    f"""INSERT INTO {log} (id, migration_hash, migration_id, operation, username,
                                           hostname, created_at_utc)
                        VALUES (%s, %s, %s, 'apply', current_user, 'pgheal',
                                now() AT TIME ZONE 'utc')""",
                    (str(uuid.uuid1()), key(migration), migration.name),
                )

    return ToolHistory("yoyo", table, applied, record, conn, (table,) + ((log,) if log else ()))


# -- Alembic: the heads reached; what they follow is applied --------------------------------------


def _alembic(conn: psycopg.Connection, table: str, migrations: list[Migration]) -> ToolHistory:
    follows = {m.name: m.follows for m in migrations}

    def applied(migration: Migration) -> bool:
        reached: set[str] = set()
        todo = [r for (r,) in conn.execute(f"SELECT version_num FROM {table}").fetchall()]
        while todo:
            revision = todo.pop()
            if revision not in reached:
                reached.add(revision)
                todo += follows.get(revision, ())
        return migration.name in reached

    def record(migration: Migration, _ms: int) -> None:
        raise AssertionError("pgheal never runs an Alembic migration")

    return ToolHistory("alembic", table, applied, record, conn, (table,))


def for_layout(
    conn: psycopg.Connection, layout: str, migrations: list[Migration] = ()
) -> ToolHistory | None:
    """The history of the tool `layout` is for, when its table exists in this database.

    Raises HistoryError when the table there is not one pgheal may trust."""
    if layout == "alembic":
        table = resolve(conn, "alembic_version")
        return _alembic(conn, table, list(migrations)) if table is not None else None
    if layout == "hasura":
        return _hasura(conn)
    if layout in ("dbmate", "golang-migrate"):
        table = resolve(conn, "schema_migrations")
        if table is None:
            return None
        # The two tools share a table name: golang-migrate's has a dirty flag.
        if has_column(conn, table, "dirty"):
            return _golang(conn, table) if layout == "golang-migrate" else None
        return _versions(conn, table, "dbmate") if layout == "dbmate" else None
    found = {
        "flyway": ("flyway_schema_history", _flyway),
        "prisma": ("_prisma_migrations", _prisma),
        "supabase": ("supabase_migrations.schema_migrations",
                     lambda c, t: _versions(c, t, "supabase")),
        "graphile-migrate": ("graphile_migrate.migrations", _graphile),
        "sqitch": ("sqitch.changes", _sqitch),
        "yoyo": ("_yoyo_migration", _yoyo),
    }.get(layout)  # fmt: skip
    if found is None:
        return None
    table = resolve(conn, found[0])
    return found[1](conn, table) if table is not None else None
