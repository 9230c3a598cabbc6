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
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from .layouts import Migration, SqitchChange, flyway_version

#: (applied, record): whether the tool's table lists a migration; write it there.
Applied = Callable[[Migration], bool]
Record = Callable[[Migration, int], None]


@dataclass
class ToolHistory:
    """The history table of the tool a folder is laid out for, as it is now."""

    tool: str
    table: str
    applied: Applied
    record: Record


def flyway_checksum(text: str) -> int:
    """Flyway's checksum: CRC32 of the UTF-8 bytes of every line, line ends left out (a
    byte order mark on the first line too), as a signed 32-bit number."""
    text = text.removeprefix("\ufeff")
    crc = 0
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        crc = zlib.crc32(line.encode(), crc)
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _regclass(conn: psycopg.Connection, name: str) -> str | None:
    return conn.execute("SELECT to_regclass(%s)::text", (name,)).fetchone()[0]


def _has_column(conn: psycopg.Connection, table: str, column: str) -> bool:
    return bool(conn.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = %s "
        "AND NOT attisdropped", (table, column)).fetchone()[0])  # fmt: skip


def _version(migration: Migration) -> str:
    """The leading digits of a migration's name: the version dbmate, golang-migrate,
    Supabase and Hasura key their rows by."""
    match = re.match(r"\d+", migration.name)
    return match.group(0) if match else migration.name


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

    return ToolHistory(tool, table, applied, record)


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

    return ToolHistory("golang-migrate", table, applied, record)


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

    return ToolHistory("flyway", table, applied, record)


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

    return ToolHistory("prisma", table, applied, record)


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

    return ToolHistory("graphile-migrate", table, applied, record)


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


def _sqitch(conn: psycopg.Connection, table: str) -> ToolHistory:
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
                "INSERT INTO sqitch.projects (project, uri, creator_name, creator_email) "
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
                    f"""INSERT INTO sqitch.dependencies (change_id, type, dependency, dependency_id)
                        SELECT %s, 'require', %s, c.change_id FROM {table} c
                         WHERE c.project = %s AND c.change = %s
                         ORDER BY c.committed_at DESC LIMIT 1""",
                    (change_id, dependency, change.project, dependency.split("@")[0]),
                )  # fmt: skip
            for dependency in change.conflicts:
                conn.execute("INSERT INTO sqitch.dependencies VALUES (%s, 'conflict', %s, NULL)",
                             (change_id, dependency))  # fmt: skip
            for tag in change.tags:
                conn.execute(
                    """INSERT INTO sqitch.tags (tag_id, tag, project, change_id, note,
                           committer_name, committer_email, planned_at, planner_name,
                           planner_email) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    (_sqitch_tag_id(change, change_id, tag), tag[0], change.project, change_id,
                     tag[4], *who, tag[1], tag[2], tag[3]),
                )  # fmt: skip
            conn.execute(
                """INSERT INTO sqitch.events (event, change_id, change, project, note, requires,
                       conflicts, tags, committer_name, committer_email, planned_at,
                       planner_name, planner_email)
                   VALUES ('deploy', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (change_id, change.name, change.project, change.note, list(change.requires),
                 list(change.conflicts), [t[0] for t in change.tags], *who, *planned),
            )  # fmt: skip

    return ToolHistory("sqitch", table, applied, record)


# -- yoyo: rows keyed by the sha256 of the migration's id -----------------------------------------


def _yoyo(conn: psycopg.Connection, table: str) -> ToolHistory:
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
            log = _regclass(conn, "_yoyo_log")
            if log is not None:
                conn.execute(
                    f"""INSERT INTO {log} (id, migration_hash, migration_id, operation, username,
                                           hostname, created_at_utc)
                        VALUES (%s, %s, %s, 'apply', current_user, 'pgheal',
                                now() AT TIME ZONE 'utc')""",
                    (str(uuid.uuid1()), key(migration), migration.name),
                )

    return ToolHistory("yoyo", table, applied, record)


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

    return ToolHistory("alembic", table, applied, record)


def for_layout(
    conn: psycopg.Connection, layout: str, migrations: list[Migration] = ()
) -> ToolHistory | None:
    """The history of the tool `layout` is for, when its table exists in this database."""
    if layout == "alembic":
        table = _regclass(conn, "alembic_version")
        return _alembic(conn, table, list(migrations)) if table is not None else None
    if layout in ("dbmate", "golang-migrate"):
        table = _regclass(conn, "schema_migrations")
        if table is None:
            return None
        # The two tools share a table name: golang-migrate's has a dirty flag.
        if _has_column(conn, table, "dirty"):
            return _golang(conn, table) if layout == "golang-migrate" else None
        return _versions(conn, table, "dbmate") if layout == "dbmate" else None
    found = {
        "flyway": ("flyway_schema_history", _flyway),
        "prisma": ("_prisma_migrations", _prisma),
        "supabase": ("supabase_migrations.schema_migrations",
                     lambda c, t: _versions(c, t, "supabase")),
        "hasura": ("hdb_catalog.schema_migrations",
                   lambda c, t: _versions(c, t, "hasura", "AND NOT dirty")),
        "graphile-migrate": ("graphile_migrate.migrations", _graphile),
        "sqitch": ("sqitch.changes", _sqitch),
        "yoyo": ("_yoyo_migration", _yoyo),
    }.get(layout)  # fmt: skip
    if found is None:
        return None
    table = _regclass(conn, found[0])
    return found[1](conn, table) if table is not None else None
