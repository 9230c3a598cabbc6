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
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType

from .analyze import parse

#: psql meta-commands that change nothing a migration does: pg_dump's \\restrict lines,
#: and what psql-run migrations start with (output and timing). Skipped with a notice.
SKIPPED_META_COMMANDS = frozenset({"restrict", "unrestrict", "echo", "qecho", "warn", "timing",
                                   "pset", "a", "t", "x", "H", "C", "f"})  # fmt: skip
#: psql's own variables, which \\set and \\unset may change without anything in the SQL
#: referring to them (a variable of the script's own would be substituted by psql).
PSQL_VARIABLES = frozenset({
    "AUTOCOMMIT", "COMP_KEYWORD_CASE", "ECHO", "ECHO_HIDDEN", "FETCH_COUNT", "HIDE_TABLEAM",
    "HIDE_TOAST_COMPRESSION", "HISTCONTROL", "HISTFILE", "HISTSIZE", "IGNOREEOF",
    "ON_ERROR_ROLLBACK", "ON_ERROR_STOP", "PROMPT1", "PROMPT2", "PROMPT3", "QUIET",
    "SHOW_ALL_RESULTS", "SHOW_CONTEXT", "SINGLELINE", "SINGLESTEP", "VERBOSITY",
})  # fmt: skip
#: psql's include commands: ``pgheal migrate`` reads the file in; the server cannot.
INCLUDE_META_COMMANDS = frozenset({"i", "ir", "include", "include_relative"})

_META_LINE = re.compile(r"^[ \t]*\\([A-Za-z!?;]*)([^\n]*)", re.MULTILINE)
_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.DOTALL)
_SUSPECT = re.compile(
    r"""(?ix) (?:
        vacuum | reindex | discard | cluster
      | (?:create|drop) \s+ (?:database|tablespace|subscription)
      | alter \s+ (?:system|database|subscription)
      | begin | start | commit | end | rollback | abort | savepoint | release | prepare
      | (?:create|drop|alter) \b [^;]*? \b concurrently
    )\b""",
)


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of a script, with where it stands in the script (1-based).

    Made when it is used (see :class:`Statements`): its text is cut from the script,
    and its line and column are looked up, only when asked for.
    """

    number: int
    script: str = field(repr=False, compare=False)
    offset: int
    end: int
    #: What the statement is when PostgreSQL never runs it inside a transaction
    #: ("CREATE INDEX CONCURRENTLY", ...); only set when the caller asked to keep those.
    outside: str | None = None
    lines: Lines | None = field(default=None, repr=False, compare=False)

    @property
    def text(self) -> str:
        return self.script[self.offset : self.end]

    @property
    def line(self) -> int:
        return (self.lines or Lines(self.script)).at(self.offset)[0]

    @property
    def column(self) -> int:
        return (self.lines or Lines(self.script)).at(self.offset)[1]


class Statements(Sequence[Statement]):
    """A script's statements, kept as two machine integers each.

    A script of a million statements must not cost a million Python objects, nor
    a copy of itself: each statement is where it starts and ends in the script (four
    bytes each; PostgreSQL's text is below 1 GB), and a :class:`Statement` is made when
    it is used. Statements that are not run (transaction control the one-transaction
    run makes moot) stay in place, marked, so that every statement keeps its number.
    """

    def __init__(self, script: str) -> None:
        self.script = script
        self.lines = Lines(script)
        self._bounds = array("I")  # start and end of each statement, in turn
        self._dropped: set[int] = set()  # numbers of the statements not run
        self._outside: dict[int, str] = {}  # number -> what it is (Statement.outside)
        self._kept: array | None = None  # index -> number - 1, once indexed with drops

    def _add(self, start: int, end: int) -> None:
        self._bounds.append(start)
        self._bounds.append(end)

    def _drop(self, number: int) -> None:
        self._dropped.add(number)
        self._kept = None

    def _mark_outside(self, number: int, what: str) -> None:
        self._outside[number] = what

    def _make(self, position: int) -> Statement:
        number = position + 1
        return Statement(number, self.script, self._bounds[2 * position],
                         self._bounds[2 * position + 1], self._outside.get(number),
                         self.lines)  # fmt: skip

    def _all(self) -> int:
        return len(self._bounds) // 2

    def bounds(self) -> Iterator[tuple[int, int, int]]:
        """(number, start, end) of every statement, those not run included, without
        making a :class:`Statement` of each."""
        bounds = self._bounds
        for position in range(self._all()):
            yield position + 1, bounds[2 * position], bounds[2 * position + 1]

    def __len__(self) -> int:
        return self._all() - len(self._dropped)

    def __getitem__(self, index: int) -> Statement:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("statement index out of range")
        if self._dropped:
            if self._kept is None:
                dropped = self._dropped
                self._kept = array("I", (p for p in range(self._all()) if p + 1 not in dropped))
            index = self._kept[index]
        return self._make(index)

    def __iter__(self) -> Iterator[Statement]:
        dropped = self._dropped
        for position in range(self._all()):
            if position + 1 not in dropped:
                yield self._make(position)


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


class Lines:
    """Offset to (line, column), both 1-based.

    The index of line starts is built the first time it is asked (a heal's notice, an
    error): most runs never need it, and it costs four bytes a line.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: array | None = None

    def at(self, offset: int) -> tuple[int, int]:
        if self._starts is None:
            self._starts = array("I", [0])
            self._starts.extend(m.end() for m in re.finditer("\n", self.text))
        i = bisect.bisect_right(self._starts, offset) - 1
        return i + 1, offset - self._starts[i] + 1


def _blank(text: str, start: int, end: int) -> str:
    return text[:start] + " " * (end - start) + text[end:]


def leading_words(text: str) -> str:
    """The statement without its leading comments and white space."""
    return text[_LEADING_NOISE.match(text).end() :]


def meta_lines(sql: str, pglast: ModuleType) -> list[tuple[int, int, str, str]]:
    """(start, end, command, arguments) of the psql meta-command lines: a backslash the
    SQL scanner sees as a token of its own, not one inside a literal or comment."""
    candidates = [
        (m.start(), m.end(), m.group(1), m.group(2).strip(), m.start(1) - 1)
        for m in _META_LINE.finditer(sql)
    ]
    if not candidates:
        return []
    try:
        backslashes = {t.start for t in pglast.parser.scan(sql) if t.name == "ASCII_92"}
    except pglast.parser.ParseError:
        backslashes = {c[4] for c in candidates}
    return [(start, end, command, arguments)
            for start, end, command, arguments, at in candidates if at in backslashes]  # fmt: skip


def _meta_refusal(command: str, arguments: str) -> str | None:
    """Why a meta-command line cannot be skipped, or None when it can."""
    if command in SKIPPED_META_COMMANDS:
        return None
    if command in ("set", "unset"):
        variable = arguments.split()[0] if arguments.split() else ""
        if variable in PSQL_VARIABLES:
            return None
        return (f"sets psql variable {variable or '(none)'}, which heal.migrate cannot "
                "substitute into the SQL")  # fmt: skip
    if command in INCLUDE_META_COMMANDS:
        return "includes a file, which the server cannot read"
    return "is not SQL"


def split(sql: str, pglast: ModuleType, keep_outside: bool = False) -> Script:
    """Split `sql` into statements; raise :class:`ScriptError` when it cannot run.

    With `keep_outside`, statements that cannot run inside a transaction are kept and
    marked (:attr:`Statement.outside`) instead of refused: the CLI runs them itself.
    """
    statements = Statements(sql)
    script = Script(statements=statements)
    blanked = sql
    for start, end, command, arguments in meta_lines(sql, pglast):
        line, _ = statements.lines.at(start)
        refusal = _meta_refusal(command, arguments)
        if refusal is not None:
            raise ScriptError(
                "42601",
                f"psql meta-command \\{command} on line {line} {refusal}",
                hint="pgheal migrate reads \\i and \\ir files into the script; otherwise "
                "heal.migrate runs SQL only: remove the line, or run the script with psql."
                if command in INCLUDE_META_COMMANDS
                else "heal.migrate runs SQL only: remove the line, or run the script with psql.",
            )
        script.notices.append(f"skipped psql meta-command \\{command} on line {line}")
        blanked = _blank(blanked, start, end)

    try:
        for start, stop in _spans(blanked, pglast):
            statements._add(start, stop)
    except pglast.parser.ParseError as exc:
        message = exc.args[0]
        location = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else len(sql)
        line, column = statements.lines.at(location)
        number = _statement_at(blanked, location, pglast)
        raise ScriptError(
            "42601",
            f"{message} (statement {number}, line {line}, column {column})",
            hint="Nothing was run: fix the script and run it again.",
        ) from None
    _check_runnable(script, pglast, keep_outside)
    return script


#: How much of a script the parser is given at once. libpg_query keeps the parse trees
#: of all it splits until it is done, some fifty times the text, and pglast's scanner
#: makes an object of every token: a 10 MB script split whole took over 500 MB, in
#: pieces of 256 kB still 60 MB. Pieces of 16 kB cost about 1 MB, and split no slower.
SPLIT_PIECE = 1 << 14

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
    statements, sql = script.statements, script.statements.script
    for number, start, end in statements.bounds():
        if not _SUSPECT.match(sql, _LEADING_NOISE.match(sql, start, end).end(), end):
            continue  # most statements: nothing made, nothing copied
        stmt = statements._make(number - 1)
        verdict = classify_node(statement_tree(stmt, pglast))
        if verdict == "skip":
            script.notices.append(
                f"skipped {leading_words(stmt.text).split()[0].upper()} on line {stmt.line}: "
                "heal.migrate runs the whole script in one transaction"
            )
            statements._drop(number)
        elif verdict is not None and keep_outside:
            statements._mark_outside(number, verdict)
        elif verdict is not None:
            raise ScriptError(
                "25001",
                f"{verdict} cannot run inside heal.migrate "
                f"(statement {stmt.number}, line {stmt.line})",
                hint="PostgreSQL never runs it inside a transaction or function: "
                "run it on its own at top level, for example with psql.",
            )


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
    "DropSubscriptionStmt": "DROP SUBSCRIPTION",
}
#: Transaction control the one-transaction run makes moot: dropped with a notice.
_SKIPPED_TRANSACTION = frozenset({"TRANS_STMT_BEGIN", "TRANS_STMT_START", "TRANS_STMT_COMMIT"})


def _defnames(items: list | None) -> set[str]:
    """The option names of a DefElem list (``params``, ``options``)."""
    return {i["DefElem"].get("defname", "") for i in items or () if "DefElem" in i}


def _off(items: list | None, name: str) -> bool:
    """Whether boolean option `name` of a DefElem list is given as false, as the server
    reads a boolean (``false``, ``off``, ``0``, ``no``; no value at all is true). The
    JSON tree leaves false and zero values out."""
    for item in items or ():
        elem = item.get("DefElem", {})
        if elem.get("defname") != name:
            continue
        arg = elem.get("arg")
        if arg is None:
            return False
        ((kind, value),) = arg.items()
        if kind == "Boolean":
            return not value.get("boolval", False)
        if kind == "Integer":
            return value.get("ival", 0) == 0
        if kind == "TypeName":  # a bare word: off, false, no
            value = (value.get("names") or [{}])[-1].get("String", {})
        text = str(value.get("sval", "")).lower()
        return text in ("false", "off", "0", "no", "of", "f", "fa", "fal", "fals", "n")
    return False


#: ALTER SUBSCRIPTION kinds that refresh the publications unless told not to.
_REFRESHING = frozenset({"ALTER_SUBSCRIPTION_SET_PUBLICATION",
                         "ALTER_SUBSCRIPTION_ADD_PUBLICATION",
                         "ALTER_SUBSCRIPTION_DROP_PUBLICATION"})  # fmt: skip


def classify_node(tree: dict) -> str | None:
    """``"skip"`` for BEGIN/COMMIT, a statement name when it cannot run in a procedure.

    `tree` is one statement of the JSON parse tree (see :func:`statement_tree`): false
    booleans and absent nodes are left out of it, enums are their names.
    """
    ((kind, node),) = tree.items()
    if kind in _NEVER_IN_TRANSACTION:
        return _NEVER_IN_TRANSACTION[kind]
    if kind == "CreateSubscriptionStmt":  # unless it makes no replication slot
        options = node.get("options")
        no_slot = _off(options, "create_slot") or _off(options, "connect")
        return None if no_slot else "CREATE SUBSCRIPTION"
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
        if target in ("REINDEX_OBJECT_SCHEMA", "REINDEX_OBJECT_SYSTEM", "REINDEX_OBJECT_DATABASE"):
            return f"REINDEX {target.rsplit('_', 1)[1]}"
    if kind == "AlterTableStmt":
        for cmd in node.get("cmds") or ():
            command = cmd.get("AlterTableCmd", {})
            partition = (command.get("def") or {}).get("PartitionCmd", {})
            if command.get("subtype") == "AT_DetachPartition" and partition.get("concurrent"):
                return "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY"
    if kind == "AlterSubscriptionStmt":
        sub = node.get("kind", "")
        if sub == "ALTER_SUBSCRIPTION_REFRESH":
            return "ALTER SUBSCRIPTION ... REFRESH PUBLICATION"
        if sub in _REFRESHING and not _off(node.get("options"), "refresh"):
            return "ALTER SUBSCRIPTION ... PUBLICATION with refresh"
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
