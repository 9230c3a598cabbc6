"""Turn a migration script into the statements ``heal.migrate`` runs.

Splitting parses the script with pglast's parser into JSON parse trees, a piece at a
time (so a syntax error is found before anything runs): each statement is parsed
once, and the same trees tell where statements end, feed the static analysis, and
show, by their kind, the few statements that might be something a procedure cannot
run. Statements are edited as text found by the scanner: pglast's AST objects
are never built from user text (they recurse without a depth check and crash the
backend on deep input).
"""

from __future__ import annotations

import bisect
import json
import re
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import ModuleType

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
        self._alone: set[int] = set()  # numbers of those to run alone (Statements.alone)

    @property
    def alone(self) -> frozenset[int]:
        """The numbers of the statements to run on their own, not in a chunk of PL/pgSQL
        EXECUTEs: ``SELECT ... INTO`` (which EXECUTE refuses once it has run it), and
        those too deep for a tree to tell."""
        return frozenset(self._alone)

    @property
    def dropped(self) -> frozenset[int]:
        """The numbers of the statements that are not run."""
        return frozenset(self._dropped)

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

    def spans(self) -> Iterator[tuple[int, int, int]]:
        """(number, start, end) of the statements that run, without making objects."""
        dropped = self._dropped
        for number, start, end in self.bounds():
            if number not in dropped:
                yield number, start, end

    def numbered(self, number: int) -> Statement:
        """The statement numbered `number` (1-based, those not run counted)."""
        return self._make(number - 1)

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
    #: number -> JSON parse tree, while split: the statements whose kind says they may
    #: be something a procedure cannot run (see :func:`_suspect`, :func:`_check_runnable`)
    suspects: dict[int, str | None] = field(default_factory=dict, repr=False)


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


def split(
    sql: str,
    pglast: ModuleType,
    keep_outside: bool = False,
    each: Callable[[str | None, int, int], None] | None = None,
) -> Script:
    """Split `sql` into statements; raise :class:`ScriptError` when it cannot run.

    With `keep_outside`, statements that cannot run inside a transaction are kept and
    marked (:attr:`Statement.outside`) instead of refused: the CLI runs them itself.
    `each` is given the statements a piece of the script holds, as (JSON parse tree,
    None when too deep for one; start; stop), in order (those dropped afterwards too):
    the analysis reads the split's own parse, and what it does to every tree it does
    to a piece's at once.
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

    bounds, suspects, alone = statements._bounds, script.suspects, statements._alone
    try:
        for piece in _pieces(blanked, pglast):
            if each is not None:
                each(piece)
            for start, stop, tree in piece:
                bounds.append(start)
                bounds.append(stop)
                if _suspect(tree, sql, start, stop):
                    suspects[len(bounds) // 2] = tree
                if tree is None or (tree.startswith(_SELECT) and _INTO in tree):
                    alone.add(len(bounds) // 2)
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
    _check_runnable(script, keep_outside)
    return script


#: How much of a script the parser is given at once. libpg_query keeps the parse trees
#: of all it parses until it is done, some fifty times the text: a 10 MB script parsed
#: whole took over 500 MB. Pieces of 16 kB cost about 1 MB, and parse no slower.
SPLIT_PIECE = 1 << 14

#: How many of a piece's last statement ends are tried as its end (one inside a BEGIN
#: ATOMIC body ends no statement) before the piece is made larger.
_CUT_TRIES = 8

#: Where each statement's tree starts in libpg_query's JSON: only a RawStmt has a field
#: named ``stmt``, and a quote inside a JSON string is escaped, so this is never inside one.
_RAW_STMT = '{"stmt":{'


def _pieces(text: str, pglast: ModuleType) -> Iterator[list[tuple[int, int, str | None]]]:
    """(start, stop, tree) of each statement of `text`, a list a piece parsed at a time.

    `tree` is the statement's JSON parse tree as libpg_query writes it (``{"Kind":
    {...}}``), None when it is too deep for one: the one parse of the split feeds the
    analysis too. A piece ends where a statement does, at a semicolon the parser ends
    one at (see :func:`_cut`); one that cannot be cut is made larger. A syntax error is
    raised at its place in `text`.
    """
    start, size = 0, SPLIT_PIECE
    while start < len(text):
        if len(text) - start <= size:
            yield _parsed(text, start, len(text), pglast)
            return
        found = _cut(text, start, start + size, pglast)
        if found is None:
            size *= 2
            continue
        start, parsed = found
        yield parsed
        size = SPLIT_PIECE


def _cut(
    text: str, start: int, stop: int, pglast: ModuleType
) -> tuple[int, list[tuple[int, int, str | None]]] | None:
    """Where in text[start:stop] a whole number of statements ends, and their spans.

    Tried at the piece's last semicolons: one inside a literal, a block comment or a
    body does not parse; one inside a line comment parses, but the parser ends no
    statement there. Failing that (a statement too deep for a JSON tree, say), at the
    ends the scanner finds.
    """
    piece = text[start:stop]
    at = len(piece)
    for _ in range(_CUT_TRIES):
        at = piece.rfind(";", 0, at)
        if at < 0:
            break
        try:
            tree_json = pglast.parser.parse_sql_json(piece[: at + 1])
        except pglast.parser.ParseError:
            continue
        ended = at if piece.isascii() else len(piece[:at].encode())
        location, length, _ = _raw_bounds(tree_json, len(tree_json) - 3)
        if length and location + length == ended:
            return start + at + 1, list(_statements(tree_json, text, start, start + at + 1))
    try:
        slices = pglast.split(piece, with_parser=False, only_slices=True)
    except pglast.parser.ParseError:
        return None  # cut inside a literal or a comment
    # The last statement the scanner finds may be cut short by the piece's end.
    for end in [s.stop for s in slices[:-1]][-_CUT_TRIES:][::-1]:
        try:
            return start + end, _parsed(text, start, start + end, pglast)
        except pglast.parser.ParseError:
            continue
    return None


def _parsed(
    text: str, start: int, stop: int, pglast: ModuleType
) -> list[tuple[int, int, str | None]]:
    """:func:`_pieces` of text[start:stop], which must be whole statements."""
    piece = text[start:stop]
    try:
        return list(_statements(pglast.parser.parse_sql_json(piece), text, start, stop))
    except pglast.parser.ParseError as exc:
        try:
            slices = pglast.split(piece, with_parser=True, only_slices=True)
        except pglast.parser.ParseError:
            at = exc.args[1] if len(exc.args) > 1 and exc.args[1] is not None else len(piece)
            raise pglast.parser.ParseError(exc.args[0], start + at) from None
    # It parses, but a statement is too deep for a JSON tree: each one on its own.
    parsed = []
    for span in slices:
        try:
            one = pglast.parser.parse_sql_json(piece[span])
        except pglast.parser.ParseError:
            parsed.append((start + span.start, start + span.stop, None))
            continue
        parsed += _statements(one, text, start + span.start, start + span.stop)
    return parsed


def _raw_bounds(tree_json: str, end: int) -> tuple[int, int, int]:
    """(stmt_location, stmt_len, where its statement's own tree ends) of the RawStmt
    whose closing brace is at `end` in `tree_json`; the JSON leaves a 0 out. A stmt_len
    ends at the statement's semicolon: 0 when none ends it."""
    tail, location, length = end, 0, 0
    at = tree_json.rfind(',"stmt_len":', end - 24, end)
    if at >= 0:
        length, tail = int(tree_json[at + 12 : end]), at
    at = tree_json.rfind(',"stmt_location":', tail - 30, tail)
    if at >= 0:
        location, tail = int(tree_json[at + 17 : tail]), at
    return location, length, tail


def _statements(tree_json: str, text: str, start: int, stop: int) -> Iterator[tuple[int, int, str]]:
    """(start, stop, tree) of each statement `tree_json` parsed from text[start:stop],
    without leading and trailing white space, as ``pglast.split`` cuts them; `tree` is
    the statement's own ``{"Kind": {...}}``."""
    piece = text[start:stop]
    encoded = None if piece.isascii() else piece.encode()
    done_bytes = done_chars = 0  # the parser counts bytes, Python characters
    find = tree_json.find
    at = find(_RAW_STMT)
    while at >= 0:
        following = find(_RAW_STMT, at + 9)
        end = following - 2 if following >= 0 else len(tree_json) - 3  # the RawStmt's }
        location, length, tree_end = _raw_bounds(tree_json, end)
        tree = tree_json[at + 8 : tree_end]
        if encoded is None:
            low, high = location, location + length if length else len(piece)
        else:
            done_chars += len(encoded[done_bytes:location].decode())
            low = done_chars
            high = low + len(encoded[location : location + length].decode()) if length else len(
                piece)  # fmt: skip
            done_bytes, done_chars = location + length, high
        cut = piece[low:high]
        yield (start + low + len(cut) - len(cut.lstrip()), start + low + len(cut.rstrip()),
               tree)  # fmt: skip
        at = following


def _statement_at(blanked: str, location: int, pglast: ModuleType) -> int:
    """The number of the statement at `location`: one more than the semicolons before it."""
    try:
        tokens = pglast.parser.scan(blanked[:location])
    except pglast.parser.ParseError:
        return 1
    return 1 + sum(1 for t in tokens if t.name == "ASCII_59")


def _check_runnable(script: Script, keep_outside: bool) -> None:
    """Drop transaction control that the one-transaction run makes moot; refuse the rest."""
    statements = script.statements
    for number, tree in script.suspects.items():
        stmt = statements._make(number - 1)
        try:
            if tree is None:
                raise RecursionError
            verdict = classify_node(json.loads(tree))
        except RecursionError:  # too deep for the parser's tree, or for json.loads
            raise too_deep(stmt) from None
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
    script.suspects.clear()


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


#: A SELECT ... INTO, as its tree says (only the outermost SELECT has an INTO).
_SELECT, _INTO = '{"SelectStmt":', '"intoClause":'
#: The kinds of statement :func:`classify_node` reads further, as their trees start.
_SUSPECT_KINDS = tuple(f'{{"{kind}":' for kind in (
    *_NEVER_IN_TRANSACTION, "CreateSubscriptionStmt", "VacuumStmt", "ReindexStmt",
    "AlterSubscriptionStmt", "AlterDatabaseStmt", "ClusterStmt", "DiscardStmt",
    "TransactionStmt"))  # fmt: skip
#: Those it reads further only when they say CONCURRENTLY.
_CONCURRENT_KINDS = ('{"IndexStmt":', '{"DropStmt":', '{"AlterTableStmt":')


def _suspect(tree: str | None, sql: str, start: int, stop: int) -> bool:
    """Whether the statement may be something a procedure cannot run: by its tree's
    kind, or, with no tree (too deep for one), by its first words."""
    if tree is None:
        return bool(_SUSPECT.match(sql, _LEADING_NOISE.match(sql, start, stop).end(), stop))
    return tree.startswith(_SUSPECT_KINDS) or (
        tree.startswith(_CONCURRENT_KINDS) and '"concurrent":true' in tree
    )


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

    `tree` is one statement of the JSON parse tree (see :func:`split`): false
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
    from .analyze import parse  # here: the CLI splits scripts, and never analyses them

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
