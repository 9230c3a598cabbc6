"""``CALL heal.scan()``: heal what applications ran into, learn from what people did.

Run by pg_cron inside the database. One scan: read the server log from where the
last one stopped, record this database's errors with their fingerprints, learn
from the DDL people ran since, apply the fixes that policy allows (the same fix
code as heal.migrate), retry failed migrations that can now heal, and purge old
records. Overlapping scans are impossible: a second one records that it skipped.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import plpy

from . import reasons, records
from .catalog import DatabaseCatalog, extension_owns
from .db import caller, cancelled, database_search_path, fetch, fetch_value, settings
from .errors import Missing
from .fingerprint import Fingerprint, fingerprint
from .fixes import apply_plan_as, fix_error_kind, plan_error, spi_message
from .logs import LogFile, Record, Wanted, read_log, reading_order
from .planner import Fix, plan
from .policy import Policy
from .searchpath import join_path, split_path
from .sharing import share


@dataclass
class Stats:
    bytes_read: int = 0
    lines_read: int = 0
    events: int = 0
    fixes: int = 0
    retried: int = 0
    learned: int = 0
    purged: int = 0
    notes: list[str] = field(default_factory=list)


def scan() -> dict[str, Any]:
    """Body of ``CALL heal.scan()``; returns the summary it records in heal.scans."""
    started, started_at = time.monotonic(), fetch_value("SELECT clock_timestamp()::text")
    stats = Stats()
    if not fetch_value("SELECT pg_catalog.pg_try_advisory_xact_lock(hashtext('heal.scan'))"):
        stats.notes.append("another scan is running; skipped")
        return _record(started, started_at, "skipped", stats)
    policy = Policy.from_settings(settings())
    for batch in intake(policy, stats):
        observe(batch, stats)
    ok = all(
        _stage(name, work, stats)
        for name, work in (
            ("learning", lambda: learn(stats)),
            ("healing", lambda: heal_errors(policy, stats)),
            ("retries", lambda: retry_migrations(stats)),
            ("housekeeping", lambda: purge(policy, stats)),
            ("sharing", share),
        )
    )
    return _record(started, started_at, "ok" if ok else "failed", stats)


def _stage(name: str, work: Callable[[], object], stats: Stats) -> bool:
    """Run one stage of the scan; a failure is noted, and the next stages still run.

    What the scan read is kept whatever happens after: errors that any role can
    write into the log must never stop the scan for good by failing it again and
    again from the same place.
    """
    try:
        with plpy.subtransaction():
            work()
    except Exception as exc:
        if cancelled(exc):
            raise
        stats.notes.append(f"{name} failed: {spi_message(exc)}")
        return False
    return True


def _record(started: float, started_at: str, status: str, stats: Stats) -> dict[str, Any]:
    summary = {
        "status": status, "bytes_read": stats.bytes_read, "lines_read": stats.lines_read,
        "events": stats.events, "fixes": stats.fixes, "retried": stats.retried,
        "learned": stats.learned, "purged": stats.purged,
        "note": "; ".join(stats.notes) or None,
        "duration_ms": round((time.monotonic() - started) * 1000, 3),
    }  # fmt: skip
    fetch(
        """INSERT INTO heal.scans (started_at, duration_ms, status, bytes_read, lines_read,
                                   events, fixes, retried, learned, purged, note)
           SELECT $1::timestamptz, s.duration_ms, s.status, s.bytes_read, s.lines_read,
                  s.events, s.fixes, s.retried, s.learned, s.purged, s.note
             FROM jsonb_to_record($2::jsonb) AS s(duration_ms numeric, status text,
                  bytes_read bigint, lines_read bigint, events int, fixes int, retried int,
                  learned int, purged int, note text)""",
        started_at,
        json.dumps(summary),
    )
    plpy.notice(
        f"heal.scan: {status}: {stats.events} errors read, {stats.fixes} fixed, "
        f"{stats.learned} learned, {stats.retried} migrations retried"
        + (f" ({summary['note']})" if summary["note"] else "")
    )
    return summary


# -- reading the server log ------------------------------------------------------------------


def log_source() -> tuple[str | None, str | None, str]:
    """(directory, format, why not) of the structured server log this scan can read."""
    row = fetch(
        """SELECT current_setting('logging_collector') AS collector,
                  current_setting('log_destination') AS destination,
                  current_setting('log_directory') AS directory,
                  current_setting('data_directory') AS data"""
    )[0]
    destinations = {d.strip() for d in row["destination"].split(",")}
    fmt = "json" if "jsonlog" in destinations else "csv" if "csvlog" in destinations else None
    if row["collector"] != "on" or fmt is None:
        return (
            None,
            None,
            (
                "log intake is off: set logging_collector = on and add csvlog (or jsonlog) to "
                "log_destination in postgresql.conf, then restart"
            ),
        )
    directory = os.path.join(row["data"], row["directory"])
    return directory, fmt, ""


def log_files(directory: str, fmt: str) -> list[LogFile]:
    """The server's log files of format `fmt` in `directory`, as they are now."""
    suffix = ".json" if fmt == "json" else ".csv"
    files = []
    for name in os.listdir(directory):
        if name.endswith(suffix):
            info = os.stat(os.path.join(directory, name))
            files.append(LogFile(name, info.st_mtime, info.st_size, info.st_ino))
    return files


#: Where log reading stands: (file, offset, file's mtime, file's inode).
Position = tuple[str | None, int, float | None, int | None]


@dataclass
class Reading:
    """What one read of the server log from a position gave, and where it ends."""

    position: Position
    records: list[tuple[str, Record]] = field(default_factory=list)
    lines: int = 0
    consumed: int = 0
    notes: list[str] = field(default_factory=list)


def read_since(
    directory: str,
    fmt: str,
    position: Position,
    policy: Policy,
    want: Callable[[Record], bool],
    *,
    budget: int | None = None,
    room: int | None = None,
) -> Reading:
    """The records `want` takes, logged since `position`, within the scan's budgets
    (scan_max_bytes, scan_max_events, or what is left of them: `budget`, `room`): the
    file read last from its offset (unless it was replaced), then every newer file."""
    files = log_files(directory, fmt)
    out = Reading(position)
    budget = policy.scan_max_bytes if budget is None else budget
    room = policy.scan_max_events if room is None else room
    order = reading_order(files, *position)
    for index, (log, offset) in enumerate(order):
        if budget <= 0 or len(out.records) >= room:
            break
        newer = index + 1 < len(order)
        with open(os.path.join(directory, log.name), "rb") as f:
            got = read_log(f, fmt, offset, name=log.name, size=log.size, newer=newer,
                           budget=budget, full_budget=policy.scan_max_bytes,
                           room=room - len(out.records), want=want)  # fmt: skip
        out.records += [(log.name, record) for record in got.records]
        out.lines += got.lines
        out.consumed += got.consumed
        out.notes += got.notes
        budget -= got.consumed
        out.position = (log.name, got.end, log.mtime, log.inode)
        # Move past a file only when it is done with and a newer one follows; stop in a
        # file that is not, so that the rest of it is read next time, not skipped.
        if not (got.finished and newer):
            break
        following = order[index + 1][0]
        out.position = (following.name, 0, following.mtime, following.inode)
    return out


def intake(policy: Policy, stats: Stats) -> Iterator[list[tuple[str, Record]]]:
    """This database's ERRORs logged since the last scan, at most the configured amount,
    in batches of at most :data:`BATCH`: what is held in memory is one batch, whatever
    the budgets. Where reading stands is saved after each batch, in the scan's
    transaction."""
    directory, fmt, why = log_source()
    if directory is None:
        stats.notes.append(why)
        return
    state = fetch("SELECT log_file, log_offset, file_mtime, file_inode FROM heal.log_intake")
    last = state[0] if state else {"log_file": None, "log_offset": 0, "file_mtime": None,
                                   "file_inode": None}  # fmt: skip
    position = (last["log_file"], last["log_offset"], last["file_mtime"], last["file_inode"])
    want = wanted(fetch_value("SELECT current_database()"), fmt)
    taken = 0
    while True:
        got = read_since(directory, fmt, position, policy, want,
                         budget=policy.scan_max_bytes - stats.bytes_read,
                         room=min(BATCH, policy.scan_max_events - taken))  # fmt: skip
        stats.lines_read += got.lines
        stats.bytes_read += got.consumed
        stats.notes += got.notes
        taken += len(got.records)
        moved = got.position != position
        if moved:
            position = got.position
            fetch(
                """INSERT INTO heal.log_intake (log_file, log_offset, file_mtime, file_inode,
                          updated_at)
                   VALUES ($1, $2, $3, $4, now())
                   ON CONFLICT (singleton) DO UPDATE SET log_file = $1, log_offset = $2,
                          file_mtime = $3, file_inode = $4, updated_at = now()""",
                *position,
                types=("text", "int8", "float8", "int8"),
            )
        if got.records:
            yield got.records
        if not moved or taken >= policy.scan_max_events or (
                stats.bytes_read >= policy.scan_max_bytes):  # fmt: skip
            return


def wanted(database: str, fmt: str) -> Wanted:
    """Which log records the scan takes in: this database's ERRORs, not pgheal's own."""
    return Wanted(database, fmt, lambda record: not raised_by_pgheal(record))


def skip_backlog() -> str:
    """Start log intake at the end of the current log: the next scan reads only new errors."""
    directory, fmt, why = log_source()
    if directory is None:
        return why
    files = log_files(directory, fmt)
    if not files:
        return "no log file yet: the next scan starts with the first one"
    newest = max(files, key=lambda f: (f.mtime, f.name))
    fetch(
        """INSERT INTO heal.log_intake (log_file, log_offset, file_mtime, file_inode, updated_at)
           VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (singleton) DO UPDATE SET log_file = $1, log_offset = $2,
                  file_mtime = $3, file_inode = $4, updated_at = now()""",
        newest.name,
        newest.size,
        newest.mtime,
        newest.inode,
        types=("text", "int8", "float8", "int8"),
    )
    return f"log intake starts at {newest.name}, byte {newest.size}"


def raised_by_pgheal(record: Record) -> bool:
    """Errors heal.migrate raised are recorded by it already; errors pgheal's own routines
    raise (a bad heal.settings value, say) are about pgheal, not what an application
    missed. The server names a PL/pgSQL routine outside the path by its schema."""
    context = record.context or ""
    return "heal.migrate(" in context or "PL/pgSQL function heal." in context


# -- fingerprints and patterns --------------------------------------------------------------


#: Errors taken in, and held in memory, at a time: a batch's rows are one jsonb value.
BATCH = 20_000


def observe(batch: list[tuple[str, Record]], stats: Stats) -> None:
    """Record the errors taken in: their events, and their fingerprints' and patterns'
    counters, in one statement whatever the number of errors.

    Never a statement per error: updating the same counter row once per error in one
    transaction leaves a chain of row versions that every next update walks, so the
    cost would grow with the square of the errors. A fingerprint is worked out once
    per distinct (SQLSTATE, message).
    """
    known: dict[tuple[str | None, str], Fingerprint] = {}
    first: dict[str, dict] = {}  # fingerprint -> what its counters start with
    patterns: dict[str, dict] = {}  # pattern -> its objects, in the order last seen
    rows = []
    for n, (log_file, record) in enumerate(batch):
        key = (record.sqlstate, record.message)
        fp = known.get(key)
        if fp is None:
            fp = known[key] = fingerprint(record.sqlstate, record.message)
        if fp.id not in first:
            first[fp.id] = {"fingerprint": fp.id, "pattern": fp.pattern,
                            "sqlstate": record.sqlstate, "message": record.message,
                            "object": fp.missing.describe() if fp.missing else None}  # fmt: skip
        seen = patterns.setdefault(fp.pattern, {"pattern": fp.pattern, "objects": {}})
        if first[fp.id]["object"] is not None:
            seen["objects"].pop(first[fp.id]["object"], None)
            seen["objects"][first[fp.id]["object"]] = None
        rows.append({
            "n": n, "logged_at": record.logged_at, "database": record.database,
            "user_name": record.user, "application_name": record.application,
            "session_start": record.session_start, "sqlstate": record.sqlstate,
            "message": record.message, "detail": record.detail,
            "statement": record.statement, "fingerprint": fp.id, "log_file": log_file,
            "log_offset": record.offset,
        })  # fmt: skip
    if not rows:
        return
    for p in patterns.values():
        p["objects"] = list(p["objects"])[-20:]
    by_id = {fp.id: fp for fp in known.values()}
    for row in fetch(_OBSERVE, json.dumps(rows), json.dumps(list(first.values())),
                     json.dumps(list(patterns.values()))):  # fmt: skip
        _ineffective(by_id[row["fingerprint"]], row["sqlstate"], row["message"])
    stats.events += len(rows)


#: :func:`observe`'s statement: $1 the errors, $2 their fingerprints (what a new
#: counter row starts with), $3 their patterns with the objects last seen. An error
#: counts as seen after a fix when its session began after it (the session may have
#: cached the old state before). It returns the fingerprints whose fix this batch shows
#: did not help, the first time.
_OBSERVE = """
    WITH e AS (
        INSERT INTO heal.error_events (logged_at, database, user_name, application_name,
               session_start, sqlstate, message, detail, statement, fingerprint, log_file,
               log_offset)
        SELECT e.logged_at, e.database, e.user_name, e.application_name, e.session_start,
               e.sqlstate, e.message, e.detail, e.statement, e.fingerprint, e.log_file,
               e.log_offset
          FROM jsonb_to_recordset($1::jsonb) AS e(n int, logged_at timestamptz,
               database text, user_name text, application_name text,
               session_start timestamptz, sqlstate text, message text, detail text,
               statement text, fingerprint text, log_file text, log_offset bigint)
         ORDER BY e.n
        RETURNING fingerprint, logged_at, session_start),
    m AS (
        SELECT * FROM jsonb_to_recordset($2::jsonb) AS m(fingerprint text, pattern text,
               sqlstate text, message text, object text)),
    g AS (
        SELECT e.fingerprint, count(*) AS times, min(e.logged_at) AS first_seen,
               max(e.logged_at) AS last_seen,
               count(*) FILTER (WHERE coalesce(e.session_start, e.logged_at) > f.fixed_at)
                   AS after_fix
          FROM e LEFT JOIN heal.error_fingerprints f ON f.fingerprint = e.fingerprint
         GROUP BY e.fingerprint),
    counted AS (
        INSERT INTO heal.error_fingerprints AS f (fingerprint, pattern, sqlstate, message,
               object, times_seen, first_seen, last_seen, seen_after_fix)
        SELECT g.fingerprint, m.pattern, m.sqlstate, m.message, m.object, g.times,
               g.first_seen, g.last_seen, g.after_fix
          FROM g JOIN m ON m.fingerprint = g.fingerprint
        ON CONFLICT (fingerprint) DO UPDATE
           SET times_seen = f.times_seen + EXCLUDED.times_seen,
               last_seen = greatest(f.last_seen, EXCLUDED.last_seen),
               seen_after_fix = f.seen_after_fix + EXCLUDED.seen_after_fix
        RETURNING f.fingerprint, f.sqlstate, f.message, f.fixed_at IS NOT NULL
                  AND f.seen_after_fix > 0 AND NOT f.ineffective AS ineffective),
    patterns AS (
        INSERT INTO heal.universal_error_patterns AS p (pattern, sqlstate, category,
               auto_fixable, fix_description, source, times_seen, first_seen, last_seen,
               objects)
        SELECT m.pattern, coalesce(min(m.sqlstate), ''), 'unhandled', false, 'no known fix',
               'observed', sum(g.times), min(g.first_seen), max(g.last_seen),
               (SELECT ARRAY(SELECT jsonb_array_elements_text(o.objects))
                  FROM jsonb_to_recordset($3::jsonb) AS o(pattern text, objects jsonb)
                 WHERE o.pattern = m.pattern)
          FROM g JOIN m ON m.fingerprint = g.fingerprint
         GROUP BY m.pattern
        ON CONFLICT (pattern) DO UPDATE
           SET times_seen = p.times_seen + EXCLUDED.times_seen,
               first_seen = least(coalesce(p.first_seen, EXCLUDED.first_seen),
                                  EXCLUDED.first_seen),
               last_seen = greatest(coalesce(p.last_seen, EXCLUDED.last_seen),
                                    EXCLUDED.last_seen),
               objects = (SELECT coalesce(array_agg(k.o ORDER BY k.i), '{}') FROM (
                   SELECT u.o, u.i FROM unnest(ARRAY(SELECT o FROM unnest(p.objects) o
                           WHERE o <> ALL(EXCLUDED.objects)) || EXCLUDED.objects)
                          WITH ORDINALITY AS u(o, i)
                    ORDER BY u.i DESC LIMIT 20) k))
    SELECT fingerprint, sqlstate, message FROM counted WHERE ineffective"""


def _ineffective(fp: Fingerprint, sqlstate: str | None, message: str) -> None:
    """The error came back, from a session that began after the fix: it did not help."""
    fetch("UPDATE heal.error_fingerprints SET ineffective = true WHERE fingerprint = $1", fp.id)
    fetch(
        """UPDATE heal.learned_patterns SET confidence = confidence - 1,
                  ineffective = ineffective + 1,
                  enabled = enabled AND confidence > 1 WHERE fingerprint = $1""",
        fp.id,
    )
    fetch("UPDATE heal.error_fingerprints SET reason_kind = $2 WHERE fingerprint = $1", fp.id,
          reasons.INEFFECTIVE)  # fmt: skip
    _write(records.failure("the fix did not stop the error: marked ineffective",
                           reasons.INEFFECTIVE, fp.id, sqlstate=sqlstate,
                           message=message, detail={"fingerprint": fp.id}))  # fmt: skip


def _write(*events: dict) -> None:
    records.write_events(list(events), "scan")


# -- learning from people -------------------------------------------------------------------


def notice_search_path_change() -> None:
    """ALTER DATABASE fires no event trigger: compare the database's search_path instead."""
    current = join_path(database_search_path())
    seen = fetch_value("SELECT search_path FROM heal.log_intake")
    if seen is not None and seen != current:
        fetch(
            """INSERT INTO heal.ddl_log (command_tag, object_type, object_identity, role_name)
               VALUES ('ALTER DATABASE', 'search_path', $1, session_user)""",
            current,
        )
    fetch(
        """INSERT INTO heal.log_intake (search_path) VALUES ($1)
           ON CONFLICT (singleton) DO UPDATE SET search_path = $1""",
        current,
    )


def learn(stats: Stats) -> None:
    """An error that stopped after someone created an extension or a schema, or changed
    the search_path, that now makes the missing object resolve: remember that fix."""
    notice_search_path_change()
    seen = fetch_value("SELECT coalesce(max(ddl_seen), 0) FROM heal.log_intake") or 0
    ddl = fetch(
        """SELECT id, created_at, role_name, command_tag, object_type, object_identity
             FROM heal.ddl_log WHERE id > $1 AND NOT by_pgheal ORDER BY id""",
        seen,
        types=("int8",),
    )
    if not ddl:
        return
    fetch("UPDATE heal.log_intake SET ddl_seen = $1", ddl[-1]["id"], types=("int8",))
    open_errors = fetch(
        """SELECT fingerprint, pattern, sqlstate, message, last_seen FROM heal.error_fingerprints
            WHERE fixed_at IS NULL AND object IS NOT NULL"""
    )
    catalog = DatabaseCatalog()
    for error in open_errors:
        fp = fingerprint(error["sqlstate"], error["message"])
        if fp.missing is None:
            continue
        for change in ddl:
            if str(change["created_at"]) < str(error["last_seen"]):
                continue
            fix = _lesson(fp.missing, change, catalog)
            if fix is None or not _in_effect(fix, catalog):
                continue  # a change undone since (or never made) teaches nothing
            _remember(error, fix, f"{change['command_tag']} by {change['role_name']}")
            # A person fixed it: the error is closed, and not by pgheal (whose learned
            # pattern is for the next time, here or in another database).
            fetch(
                """UPDATE heal.error_fingerprints SET fixed_at = $2::timestamptz,
                          fix_source = 'person', refused = NULL, reason_kind = NULL
                    WHERE fingerprint = $1""",
                error["fingerprint"], str(change["created_at"]),
            )  # fmt: skip
            stats.learned += 1
            break


def _lesson(missing: Missing, change: dict, catalog: DatabaseCatalog) -> Fix | None:
    tag, name = change["command_tag"], change["object_identity"] or ""
    if tag == "CREATE SCHEMA" and missing.kind == "schema" and missing.name == name.strip('"'):
        return Fix("create_schema", missing.name)
    if tag == "CREATE EXTENSION":
        extension = name.strip('"')
        if extension in catalog.providers(missing) or extension_owns(missing, extension):
            return Fix("create_extension", extension)
    if tag == "ALTER DATABASE":
        path = split_path(name)
        schemas = [s for s in catalog.locate(missing) if s in path]
        if schemas:
            return Fix("persist_search_path", schemas[0])
    return None


def _in_effect(fix: Fix, catalog: DatabaseCatalog) -> bool:
    """Whether what a person did is still there: the schema, the extension, the path."""
    if fix.kind == "create_schema":
        return catalog.schema_exists(fix.target)
    if fix.kind == "create_extension":
        ext = catalog.extension(fix.target)
        return ext is not None and ext.installed_schema is not None
    return fix.target in database_search_path()


def _remember(error: dict, fix: Fix, source: str) -> None:
    fetch(
        """INSERT INTO heal.learned_patterns AS l (fingerprint, pattern, sqlstate, message,
                  fix_kind, fix_target, learned_from)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (fingerprint, fix_kind, fix_target)
           DO UPDATE SET confidence = l.confidence + 1, learned_from = EXCLUDED.learned_from""",
        error["fingerprint"],
        error["pattern"],
        error["sqlstate"],
        error["message"],
        fix.kind,
        fix.target,
        source,
    )
    fetch(
        """INSERT INTO heal.universal_error_patterns (pattern, sqlstate, category, auto_fixable,
                  fix_description, source, first_seen, last_seen, objects)
           VALUES ($1, coalesce($2, ''), 'learned', true, $3, 'learned', now(), now(), '{}')
           ON CONFLICT (pattern) DO UPDATE SET category = 'learned', auto_fixable = true,
                  fix_description = EXCLUDED.fix_description, source = 'learned'""",
        error["message"],
        error["sqlstate"],
        f"{fix.describe()} (learned from {source})",
    )


# -- applying fixes -----------------------------------------------------------------------------


def heal_errors(policy: Policy, stats: Stats) -> None:
    """Fix the errors seen often enough, once each, within the policy of the role that hit them."""
    candidates = fetch(
        """SELECT f.fingerprint, f.sqlstate, f.message,
                  (SELECT e.user_name FROM heal.error_events e WHERE e.fingerprint = f.fingerprint
                    ORDER BY e.logged_at DESC LIMIT 1) AS user_name
             FROM heal.error_fingerprints f
            WHERE f.fixed_at IS NULL AND NOT f.ineffective AND f.times_seen >= $1
            ORDER BY f.first_seen""",
        policy.min_occurrences,
        types=("int4",),
    )
    catalog = DatabaseCatalog()
    for error in candidates:
        fp = fingerprint(error["sqlstate"], error["message"])
        if fp.missing is None and not _has_lesson(fp.id):
            continue
        try:
            with plpy.subtransaction():
                _heal_error(fp, error, catalog, policy, stats)
        except plpy.SPIError as exc:  # one error's message must not stop the others
            if cancelled(exc):
                raise
            _refused(fp, error, f"pgheal could not plan a fix: {spi_message(exc)}",
                     reasons.NO_FIX)  # fmt: skip


def _heal_error(
    fp: Fingerprint, error: dict, catalog: DatabaseCatalog, policy: Policy, stats: Stats
) -> None:
    """Plan and apply the fix of one error, within the policy of the role that hit it."""
    started = time.monotonic()
    if not _role_exists(error["user_name"]):
        # Never the scan's own rights on behalf of a role that is gone.
        _refused(fp, error, f'role "{error["user_name"]}" no longer exists', reasons.REFUSED)
        return
    who = caller(error["user_name"])
    planned, source = plan_error(fp, catalog, policy, who)
    fixes = [f for f in planned.fixes if f.kind != "search_path"]  # session-local only
    reason, why = planned.refused or planned.reason, planned.why
    if not reason and not fixes:
        reason, why = (
            (
                f"{fp.missing.describe() if fp.missing else 'it'} exists in a schema that is not "
                "on the application's search_path, and only the extension schema is ever added "
                "to the database's: add the schema to the role's search_path"
            ),
            reasons.REFUSED,
        )
    attempt = {"fingerprint": fp.id, "source": source, "role": who.role}
    _write(records.event("auto_heal_attempt", sqlstate=error["sqlstate"],
                         message=error["message"], fingerprint=fp.id, detail=attempt))  # fmt: skip
    if reason:
        _refused(fp, error, reason, why)
        return
    try:
        with plpy.subtransaction():
            fix_sql = apply_plan_as(who.role, fixes, planned, fp.missing)
    except plpy.SPIError as exc:
        if cancelled(exc):
            raise
        _refused(fp, error, spi_message(exc), fix_error_kind(exc))
        return
    fetch(
        """UPDATE heal.error_fingerprints SET fixed_at = clock_timestamp(), fix_sql = $2,
                  fix_source = $3, refused = NULL, reason_kind = NULL WHERE fingerprint = $1""",
        fp.id,
        fix_sql,
        source,
    )
    detail = {"fingerprint": fp.id, "source": source, "way": "scan", "role": who.role,
              "pattern": fp.pattern,
              "missing": fp.missing.describe() if fp.missing else error["message"],
              "fixes": ", ".join(f.describe() for f in fixes)}  # fmt: skip
    if planned.learned is not None:
        detail["learned"] = planned.learned  # the writer counts it as applied
    if planned.network is not None:
        detail["network"] = planned.network
    _write(records.event("auto_heal_success", sqlstate=error["sqlstate"],
                         message=error["message"], fix_sql=fix_sql, fingerprint=fp.id,
                         duration_ms=round((time.monotonic() - started) * 1000, 3),
                         detail=detail))  # fmt: skip
    stats.fixes += 1


def _has_lesson(fp_id: str) -> bool:
    return bool(fetch_value("SELECT count(*) FROM heal.learned_patterns WHERE fingerprint = $1 "
                       "AND enabled", fp_id))  # fmt: skip


def _role_exists(role: str | None) -> bool:
    return bool(role) and bool(
        fetch_value("SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = $1", role)
    )


def _refused(fp: Fingerprint, error: dict, reason: str, why: str) -> None:
    previous = fetch_value(
        "SELECT refused FROM heal.error_fingerprints WHERE fingerprint = $1", fp.id
    )
    fetch("UPDATE heal.error_fingerprints SET refused = $2, reason_kind = $3 "
          "WHERE fingerprint = $1", fp.id, reason, why)  # fmt: skip
    if previous != reason:
        _write(records.failure(reason, why, fp.id, sqlstate=error["sqlstate"],
                               message=error["message"],
                               detail={"fingerprint": fp.id}))  # fmt: skip


# -- failed migrations ------------------------------------------------------------------------

#: pg_cron job names of retries: one per migration, owned by the role that ran it.
RETRY_JOB = "heal-retry:{database}:{id}"
#: A retry job that has not run by then (pg_cron could not log in as the role) is removed.
RETRY_JOB_MINUTES = 60


def retry_migrations(stats: Stats) -> None:
    """Find failed migrations whose blocking error has an allowed fix now, and have each
    retried by its own role, in a session of that role.

    Never here: this is a superuser's session, and a script can always find its way
    back to the session user (``RESET ROLE``). Where pg_cron lives in this database,
    a pg_cron job logs in as the role and runs ``CALL heal.retry_migration(id)``;
    elsewhere the migration is marked ready (``retry_ready_at``) for its role to retry.
    A role that was dropped or renamed since gets no retry.
    """
    _clean_retry_jobs()
    failed = fetch(
        """SELECT m.id, m.name, m.sqlstate, m.error, m.run_by, r.rolname AS role,
                  m.retry_ready_at IS NOT NULL AS ready
             FROM heal.migrations m
             LEFT JOIN pg_catalog.pg_roles r ON r.oid = m.run_by_oid
            WHERE m.status = 'failed' AND m.sqlstate IS NOT NULL
              AND EXISTS (SELECT FROM heal.migration_scripts s WHERE s.migration_id = m.id)
              AND NOT EXISTS (SELECT FROM heal.migrations later
                               WHERE later.id > m.id AND later.checksum = m.checksum
                                 AND later.name IS NOT DISTINCT FROM m.name)
              AND NOT EXISTS (SELECT FROM heal.migrations first
                               WHERE first.id = m.retry_of AND first.error = m.error)
            ORDER BY m.id"""
    )
    if not failed:
        return
    policy = Policy.from_settings(settings())
    catalog = DatabaseCatalog()
    cron_here = bool(fetch_value("SELECT to_regproc('cron.schedule_in_database') IS NOT NULL"))
    database = fetch_value("SELECT pg_catalog.current_database()")
    for row in failed:
        fp = fingerprint(row["sqlstate"], row["error"] or "")
        if fp.missing is None or row["role"] is None or row["role"] != row["run_by"]:
            continue  # nothing to heal, or its role is gone: no one to retry it as
        if not plan(fp.missing, catalog, policy, caller(row["role"])).ok:
            continue
        if not row["ready"]:
            fetch("UPDATE heal.migrations SET retry_ready_at = clock_timestamp() WHERE id = $1",
                  row["id"], types=("int8",))  # fmt: skip
            how = (
                "pg_cron retries it as that role"
                if cron_here
                else f"retry it as that role: CALL heal.retry_migration({row['id']})"
            )
            plpy.notice(
                f"heal.scan: migration {row['name'] or row['id']} can heal now; it ran as "
                f'role "{row["role"]}": {how}'
            )
            _write(records.event("auto_heal_attempt", sqlstate=row["sqlstate"],
                                 message=row["error"], fingerprint=fp.id,
                                 detail={"migration": row["id"], "way": "retry",
                                         "role": row["role"], "missing": fp.missing.describe(),
                                         "fixes": how}))  # fmt: skip
            stats.retried += 1
        if cron_here:
            name = RETRY_JOB.format(database=database, id=row["id"])
            fetch(
                """SELECT cron.schedule_in_database($1, '* * * * *', $2, $3, $4)
                    WHERE NOT EXISTS (SELECT FROM cron.job WHERE jobname = $1)""",
                name,
                f"CALL heal.retry_migration({int(row['id'])})",
                database,
                row["role"],
            )


def _clean_retry_jobs() -> None:
    """Remove the retry jobs whose migration was retried, or that never got to run."""
    if not fetch_value("SELECT to_regclass('cron.job') IS NOT NULL"):
        return
    database = fetch_value("SELECT pg_catalog.current_database()")
    prefix = RETRY_JOB.format(database=database, id="")
    fetch(
        """SELECT cron.unschedule(j.jobid) FROM cron.job j
             JOIN heal.migrations m ON m.id::text = substr(j.jobname, length($1) + 1)
            WHERE starts_with(j.jobname, $1)
              AND (EXISTS (SELECT FROM heal.migrations r WHERE r.retry_of = m.id)
                   OR m.retry_ready_at < clock_timestamp() - make_interval(mins => $2))""",
        prefix,
        RETRY_JOB_MINUTES,
        types=("text", "int4"),
    )


# -- housekeeping -----------------------------------------------------------------------------


def purge(policy: Policy, stats: Stats) -> None:
    """Keep the records within their retention settings."""
    deleted = fetch_value(
        """WITH events AS (
               DELETE FROM heal.error_events
                WHERE logged_at < now() - make_interval(days => $1) RETURNING 1),
           builds AS (
               DELETE FROM heal.build_events
                WHERE created_at < now() - make_interval(days => $2) RETURNING 1),
           scans AS (
               DELETE FROM heal.scans
                WHERE started_at < now() - make_interval(days => $2) RETURNING 1)
           SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM builds)
                  + (SELECT count(*) FROM scans)""",
        policy.retention_error_events_days,
        policy.retention_build_events_days,
        types=("int4", "int4"),
    )
    stats.purged = int(deleted or 0)


__all__ = ["intake", "log_source", "scan", "skip_backlog"]
