"""Turn a migration script into the statements ``heal.migrate`` runs.

Splitting uses pglast's parser (so a syntax error is found before anything runs),
then looks only at the few statements whose first words say they might be
something a procedure cannot run: parsing every statement would cost 25 times
as much as splitting.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from dataclasses import dataclass, field
from types import ModuleType

#: psql meta-commands that pg_dump writes and that have no meaning for the server.
SKIPPED_META_COMMANDS = frozenset({"restrict", "unrestrict"})

_META_LINE = re.compile(r"^[ \t]*\\([A-Za-z!?;]*)[^\n]*", re.MULTILINE)
_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_SUSPECT = re.compile(
    r"""(?ix) ^(?:
        vacuum | reindex | discard | cluster
      | (?:create|drop) \s+ (?:database|tablespace|subscription)
      | alter \s+ (?:system|database|subscription)
      | begin | start | commit | end | rollback | abort | savepoint | release | prepare
      | (?:create|drop) \b [^;]*? \b concurrently
    )\b""",
)


@dataclass(frozen=True)
class Statement:
    """One statement of a script, with where it stands in the script (1-based)."""

    number: int
    text: str
    offset: int
    line: int
    column: int
    #: What the statement is when PostgreSQL never runs it inside a transaction
    #: ("CREATE INDEX CONCURRENTLY", ...); only set when the caller asked to keep those.
    outside: str | None = None


@dataclass
class Script:
    statements: list[Statement]
    notices: list[str] = field(default_factory=list)


class ScriptError(Exception):
    """The script cannot be run as given; nothing was executed."""

    def __init__(self, sqlstate: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint


class _Lines:
    """Offset to (line, column), both 1-based."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def leading_words(text: str) -> str:
    """The statement without its leading comments and white space."""
    return text[_LEADING_NOISE.match(text).end() :]


def _meta_lines(sql: str, pglast: ModuleType) -> list[tuple[int, int, str]]:
    """(start, end, command) of the psql meta-command lines: a backslash the SQL
    scanner sees as a token of its own, not one inside a literal or comment."""
    candidates = [
        (m.start(), m.end(), m.group(1), m.start(1) - 1) for m in _META_LINE.finditer(sql)
    ]
    if not candidates:
        return []
    try:
        backslashes = {t.start for t in pglast.parser.scan(sql) if t.name == "ASCII_92"}
    except pglast.parser.ParseError:
        backslashes = {c[3] for c in candidates}
    return [(start, end, command) for start, end, command, at in candidates if at in backslashes]


def split(sql: str, pglast: ModuleType, keep_outside: bool = False) -> Script:
    """Split `sql` into statements; raise :class:`ScriptError` when it cannot run.

    With `keep_outside`, statements that cannot run inside a transaction are kept and
    marked (:attr:`Statement.outside`) instead of refused: the CLI runs them itself.
    """
    lines = _Lines(sql)
    script = Script(statements=[])
    blanked = sql
    for start, end, command in _meta_lines(sql, pglast):
        line, _ = lines.at(start)
        if command not in SKIPPED_META_COMMANDS:
            raise ScriptError(
                "42601",
                f"psql meta-command \\{command} on line {line} is not SQL",
                hint="heal.migrate runs SQL only: remove the line, or run the script with psql.",
            )
        script.notices.append(f"skipped psql meta-command \\{command} on line {line}")
        blanked = _blank(blanked, start, end)

    try:
        spans = pglast.split(blanked, with_parser=True, only_slices=True)
    except pglast.parser.ParseError as exc:
        message = exc.args[0]
        location = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else len(sql)
        line, column = lines.at(location)
        number = _statement_at(blanked, location, pglast)
        raise ScriptError(
            "42601",
            f"{message} (statement {number}, line {line}, column {column})",
            hint="Nothing was run: fix the script and run it again.",
        ) from None

    for number, span in enumerate(spans, 1):
        line, column = lines.at(span.start)
        script.statements.append(
            Statement(number, sql[span.start : span.stop], span.start, line, column)
        )
    _check_runnable(script, pglast, keep_outside)
    return script


def _statement_at(blanked: str, location: int, pglast: ModuleType) -> int:
    """The number of the statement at `location`: one more than the semicolons before it."""
    try:
        tokens = pglast.parser.scan(blanked[:location])
    except pglast.parser.ParseError:
        return 1
    return 1 + sum(1 for t in tokens if t.name == "ASCII_59")


def _check_runnable(script: Script, pglast: ModuleType, keep_outside: bool) -> None:
    """Drop transaction control that the one-transaction run makes moot; refuse the rest."""
    kept: list[Statement] = []
    for stmt in script.statements:
        if not _SUSPECT.match(leading_words(stmt.text)):
            kept.append(stmt)
            continue
        node = pglast.parser.parse_sql(stmt.text)[0].stmt
        verdict = classify_node(node)
        if verdict == "skip":
            script.notices.append(
                f"skipped {leading_words(stmt.text).split()[0].upper()} on line {stmt.line}: "
                "heal.migrate runs the whole script in one transaction"
            )
            continue
        if verdict is not None and keep_outside:
            kept.append(dataclasses.replace(stmt, outside=verdict))
            continue
        if verdict is not None:
            raise ScriptError(
                "25001",
                f"{verdict} cannot run inside heal.migrate "
                f"(statement {stmt.number}, line {stmt.line})",
                hint="PostgreSQL never runs it inside a transaction or function: "
                "run it on its own at top level, for example with psql.",
            )
        kept.append(stmt)
    script.statements = kept


def classify_node(node: object) -> str | None:
    """``"skip"`` for BEGIN/COMMIT, a statement name when it cannot run in a procedure."""
    kind = type(node).__name__
    fixed = {
        "CreatedbStmt": "CREATE DATABASE",
        "DropdbStmt": "DROP DATABASE",
        "AlterSystemStmt": "ALTER SYSTEM",
        "CreateTableSpaceStmt": "CREATE TABLESPACE",
        "DropTableSpaceStmt": "DROP TABLESPACE",
        "CreateSubscriptionStmt": "CREATE SUBSCRIPTION",
        "DropSubscriptionStmt": "DROP SUBSCRIPTION",
    }
    if kind in fixed:
        return fixed[kind]
    if kind == "VacuumStmt":
        return "VACUUM" if node.is_vacuumcmd else None
    if kind == "IndexStmt" and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if kind == "DropStmt" and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if kind == "ReindexStmt":
        params = {p.defname for p in node.params or ()}
        if "concurrently" in params:
            return "REINDEX CONCURRENTLY"
        if node.kind.name in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
            return f"REINDEX {node.kind.name.rsplit('_', 1)[1]}"
    if kind == "AlterDatabaseStmt" and any(o.defname == "tablespace" for o in node.options or ()):
        return "ALTER DATABASE ... SET TABLESPACE"
    if kind == "ClusterStmt" and node.relation is None:
        return "CLUSTER (all tables)"
    if kind == "DiscardStmt" and node.target.name == "DISCARD_ALL":
        return "DISCARD ALL"
    if kind == "TransactionStmt":
        if node.kind.name in ("TRANS_STMT_BEGIN", "TRANS_STMT_START", "TRANS_STMT_COMMIT"):
            return "skip"
        return node.kind.name.removeprefix("TRANS_STMT_").replace("_", " ")
    return None
