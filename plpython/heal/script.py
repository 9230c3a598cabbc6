"""Turn a migration script into the statements ``heal.migrate`` runs.

Splitting uses pglast's parser (so a syntax error is found before anything runs),
then looks only at the few statements whose first words say they might be
something a procedure cannot run: parsing every statement would cost 25 times
as much as splitting. Those are read as JSON parse trees, and edited as text found
by the scanner: pglast's AST objects are never built from user text (they recurse
without a depth check and crash the backend on deep input).
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType

from .analyze import parse

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


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a script, with where it stands in the script (1-based).

    A script of a million statements keeps a million of these: slotted, and the text
    is cut from the script when it is needed rather than copied for each.
    """

    number: int
    script: str = field(repr=False, compare=False)
    offset: int
    end: int
    line: int
    column: int
    #: What the statement is when PostgreSQL never runs it inside a transaction
    #: ("CREATE INDEX CONCURRENTLY", ...); only set when the caller asked to keep those.
    outside: str | None = None

    @property
    def text(self) -> str:
        return self.script[self.offset : self.end]


class Statements(Sequence[Statement]):
    """A script's statements, kept as columns of machine integers.

    A script of a million statements must not cost a million Python objects: each
    statement is five integers here, and a :class:`Statement` is made when it is used.
    """

    def __init__(self, script: str) -> None:
        self.script = script
        self._columns = tuple(array("q") for _ in range(5))  # number, offset, end, line, column
        self._outside: dict[int, str] = {}

    def append(self, stmt: Statement) -> None:
        if stmt.outside is not None:
            self._outside[len(self)] = stmt.outside
        self._add(stmt.number, stmt.offset, stmt.end, stmt.line, stmt.column)

    def _add(self, number: int, offset: int, end: int, line: int, column: int) -> None:
        for values, value in zip(self._columns, (number, offset, end, line, column), strict=True):
            values.append(value)

    def __len__(self) -> int:
        return len(self._columns[0])

    def __getitem__(self, index: int) -> Statement:  # type: ignore[override]
        if index < 0:
            index += len(self)
        number, offset, end, line, column = (c[index] for c in self._columns)
        return Statement(number, self.script, offset, end, line, column,
                         self._outside.get(index))  # fmt: skip

    def __iter__(self) -> Iterator[Statement]:
        for index in range(len(self)):
            yield self[index]


@dataclass
class Script:
    statements: Statements
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
    script = Script(statements=Statements(sql))
    blanked = sql
    for start, end, command in _meta_lines(sql, pglast):
        line, _ = _Lines(sql[:start]).at(start)
        if command not in SKIPPED_META_COMMANDS:
            raise ScriptError(
                "42601",
                f"psql meta-command \\{command} on line {line} is not SQL",
                hint="heal.migrate runs SQL only: remove the line, or run the script with psql.",
            )
        script.notices.append(f"skipped psql meta-command \\{command} on line {line}")
        blanked = _blank(blanked, start, end)

    try:
        line, line_start, previous = 1, 0, 0
        for number, (start, stop) in enumerate(_spans(blanked, pglast), 1):
            newlines = sql.count("\n", previous, start)
            if newlines:
                line += newlines
                line_start = sql.rfind("\n", previous, start) + 1
            script.statements._add(number, start, stop, line, start - line_start + 1)
            previous = start
    except pglast.parser.ParseError as exc:
        message = exc.args[0]
        location = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else len(sql)
        line, column = _Lines(sql).at(location)
        number = _statement_at(blanked, location, pglast)
        raise ScriptError(
            "42601",
            f"{message} (statement {number}, line {line}, column {column})",
            hint="Nothing was run: fix the script and run it again.",
        ) from None
    _check_runnable(script, pglast, keep_outside)
    return script


#: How much of a script the parser is given at once. libpg_query keeps the parse trees
#: of all it splits until it is done, some fifty times the text: a 10 MB script split
#: whole took over 500 MB. A piece of 256 kB costs about 15 MB.
SPLIT_PIECE = 1 << 18

#: How many of a piece's last semicolons are tried as its end (one inside a BEGIN
#: ATOMIC body ends no statement) before the piece is made larger.
_CUT_TRIES = 8


def _spans(text: str, pglast: ModuleType) -> Iterator[tuple[int, int]]:
    """(start, stop) of each statement of `text`, split a piece at a time.

    A piece ends where a statement does: at a semicolon the scanner finds, checked by
    the parser (a piece cut inside a literal, a comment or a function body does not
    parse, and is made larger). A syntax error is raised at its place in `text`.
    """
    start, size = 0, SPLIT_PIECE
    while start < len(text):
        if len(text) - start <= size:
            yield from _split_piece(text, start, len(text), pglast)
            return
        found = _cut(text, start, start + size, pglast)
        if found is None:
            size *= 2
            continue
        stop, spans = found
        for span in spans:
            yield start + span.start, start + span.stop
        start, size = stop, SPLIT_PIECE


def _split_piece(text: str, start: int, stop: int, pglast: ModuleType) -> Iterator[tuple[int, int]]:
    try:
        spans = pglast.split(text[start:stop], with_parser=True, only_slices=True)
    except pglast.parser.ParseError as exc:
        at = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else stop - start
        raise pglast.parser.ParseError(exc.args[0], start + at) from None
    for span in spans:
        yield start + span.start, start + span.stop


def _cut(text: str, start: int, stop: int, pglast: ModuleType) -> tuple[int, tuple] | None:
    """Where in text[start:stop] a whole number of statements ends, and their spans."""
    try:
        tokens = pglast.parser.scan(text[start:stop])
    except pglast.parser.ParseError:
        return None  # cut inside a literal or a comment
    ends = [t.end + 1 for t in tokens if t.name == "ASCII_59"][-_CUT_TRIES:]
    for end in reversed(ends):
        try:
            spans = pglast.split(text[start : start + end], with_parser=True, only_slices=True)
        except pglast.parser.ParseError:
            continue
        return start + end, spans
    return None


def _statement_at(blanked: str, location: int, pglast: ModuleType) -> int:
    """The number of the statement at `location`: one more than the semicolons before it."""
    try:
        tokens = pglast.parser.scan(blanked[:location])
    except pglast.parser.ParseError:
        return 1
    return 1 + sum(1 for t in tokens if t.name == "ASCII_59")


def _check_runnable(script: Script, pglast: ModuleType, keep_outside: bool) -> None:
    """Drop transaction control that the one-transaction run makes moot; refuse the rest."""
    statements = script.statements
    suspects = [i for i, stmt in enumerate(statements) if _SUSPECT.match(leading_words(stmt.text))]
    if not suspects:
        return  # most scripts: nothing to drop or mark, nothing copied
    kept, looked_into = Statements(statements.script), set(suspects)
    for index, stmt in enumerate(statements):
        if index not in looked_into:
            kept.append(stmt)
            continue
        verdict = classify_node(statement_tree(stmt, pglast))
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


def statement_tree(stmt: Statement, pglast: ModuleType) -> dict:
    """The JSON parse tree of one statement, ``{"NodeType": {fields}}``.

    Only the JSON entry goes through libpg_query's own stack check: building pglast's
    AST objects recurses once per tree level unchecked and crashes the backend on a
    deep expression. A tree too deep for the parser or for ``json.loads`` is refused
    cleanly instead.
    """
    try:
        return parse(stmt.text, pglast)[0]
    except (RecursionError, pglast.parser.ParseError):
        # split() parsed this statement already: only its depth can fail here.
        raise too_deep(stmt) from None


def too_deep(stmt: Statement) -> ScriptError:
    """The error for a statement whose tree is too deep to look into."""
    return ScriptError(
        "54001",
        f"statement too deeply nested (statement {stmt.number}, line {stmt.line})",
        hint="Nothing was run: pgheal looks into this kind of statement before running "
        "it; nest the expression less deeply, or run the statement with psql.",
    )


#: Statements PostgreSQL never runs in a transaction, whatever their fields.
_NEVER_IN_TRANSACTION = {
    "CreatedbStmt": "CREATE DATABASE",
    "DropdbStmt": "DROP DATABASE",
    "AlterSystemStmt": "ALTER SYSTEM",
    "CreateTableSpaceStmt": "CREATE TABLESPACE",
    "DropTableSpaceStmt": "DROP TABLESPACE",
    "CreateSubscriptionStmt": "CREATE SUBSCRIPTION",
    "DropSubscriptionStmt": "DROP SUBSCRIPTION",
}
#: Transaction control the one-transaction run makes moot: dropped with a notice.
_SKIPPED_TRANSACTION = frozenset({"TRANS_STMT_BEGIN", "TRANS_STMT_START", "TRANS_STMT_COMMIT"})


def _defnames(items: list | None) -> set[str]:
    """The option names of a DefElem list (``params``, ``options``)."""
    return {i["DefElem"].get("defname", "") for i in items or () if "DefElem" in i}


def classify_node(tree: dict) -> str | None:
    """``"skip"`` for BEGIN/COMMIT, a statement name when it cannot run in a procedure.

    `tree` is one statement of the JSON parse tree (see :func:`statement_tree`): false
    booleans and absent nodes are left out of it, enums are their names.
    """
    ((kind, node),) = tree.items()
    if kind in _NEVER_IN_TRANSACTION:
        return _NEVER_IN_TRANSACTION[kind]
    if kind == "VacuumStmt":
        return "VACUUM" if node.get("is_vacuumcmd") else None
    if kind == "IndexStmt" and node.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY"
    if kind == "DropStmt" and node.get("concurrent"):
        return "DROP INDEX CONCURRENTLY"
    if kind == "ReindexStmt":
        if "concurrently" in _defnames(node.get("params")):
            return "REINDEX CONCURRENTLY"
        target = node.get("kind", "")
        if target in ("REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
            return f"REINDEX {target.rsplit('_', 1)[1]}"
    if kind == "AlterDatabaseStmt" and "tablespace" in _defnames(node.get("options")):
        return "ALTER DATABASE ... SET TABLESPACE"
    if kind == "ClusterStmt" and "relation" not in node:
        return "CLUSTER (all tables)"
    if kind == "DiscardStmt" and node.get("target") == "DISCARD_ALL":
        return "DISCARD ALL"
    if kind == "TransactionStmt":
        name = node.get("kind", "")
        if name in _SKIPPED_TRANSACTION:
            return "skip"
        return name.removeprefix("TRANS_STMT_").replace("_", " ")
    return None


def _tokens(sql: str, pglast: ModuleType) -> list:
    """The scanner's tokens of `sql` without comments: flat, safe on any input."""
    return [t for t in pglast.parser.scan(sql) if t.name not in ("C_COMMENT", "SQL_COMMENT")]


def quote_ident(name: str) -> str:
    """`name` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class PolicyProbe:
    """A CREATE POLICY's target, and the same statement creating `probe` instead."""

    schema: str | None
    table: str
    name: str
    sql: str


def policy_probe(sql: str, probe: str, pglast: ModuleType) -> PolicyProbe | None:
    """`sql` (one CREATE POLICY) with its policy renamed to `probe`; None for anything else.

    The name is swapped in the original text, found by the scanner as the token after
    CREATE POLICY, rather than deparsed from an AST: deparsing recurses unchecked and
    crashes on deep expressions, and the text is what PostgreSQL rejected anyway.
    """
    try:
        trees = parse(sql, pglast)
        tokens = _tokens(sql, pglast)
    except (RecursionError, pglast.parser.ParseError):
        return None
    if len(trees) != 1 or "CreatePolicyStmt" not in trees[0]:
        return None
    if len(tokens) < 3 or [t.name for t in tokens[:2]] != ["CREATE", "POLICY"]:
        return None
    node = trees[0]["CreatePolicyStmt"]
    table = node.get("table") or {}
    name = tokens[2]
    return PolicyProbe(
        schema=table.get("schemaname"),
        table=table.get("relname", ""),
        name=node.get("policy_name", ""),
        sql=sql[: name.start] + quote_ident(probe) + sql[name.end + 1 :],
    )


def without_concurrently(sql: str, pglast: ModuleType) -> str:
    """A CREATE or DROP INDEX CONCURRENTLY without its CONCURRENTLY, for a dry run.

    Edits the text at the keyword the scanner finds instead of deparsing, which fails
    on deep trees. The keyword comes first; an index named concurrently right after it
    gets quoted, or it would read as the keyword again.
    """
    tokens = _tokens(sql, pglast)
    for i, token in enumerate(tokens):
        if token.name != "CONCURRENTLY":
            continue
        rest = sql[token.end + 1 :]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if following is not None and following.name == "CONCURRENTLY":
            rest = sql[token.end + 1 : following.start] + '"concurrently"'
            rest += sql[following.end + 1 :]
        return sql[: token.start] + rest.lstrip(" ")
    return sql
