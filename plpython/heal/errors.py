"""Read a PostgreSQL error and say which dependency is missing.

The messages parsed here are the server's own (``src/backend``); only the SQLSTATE
and message are used, never anything pasted into SQL: names found here are always
quoted before they reach a fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .typenames import normalize_type

UNDEFINED_FUNCTION = "42883"
UNDEFINED_OBJECT = "42704"
INVALID_SCHEMA_NAME = "3F000"
DUPLICATE_OBJECT = "42710"

#: SQLSTATEs whose message may name a missing dependency.
UNDEFINED_TABLE = "42P01"
HEALABLE_SQLSTATES = frozenset(
    {UNDEFINED_FUNCTION, UNDEFINED_OBJECT, INVALID_SCHEMA_NAME, UNDEFINED_TABLE}
)

#: Failures that go away by themselves: retried with backoff.
TRANSIENT_SQLSTATES = {
    "55P03": "lock_not_available",
    "40P01": "deadlock_detected",
    "40001": "serialization_failure",
}


def is_cancel(sqlstate: str | None) -> bool:
    """Class 57 (query canceled, statement timeout, admin shutdown): never caught.

    A cancel is the operator's or the server's decision to stop: pgheal lets it end
    the migration or the DDL, whatever it was doing.
    """
    return bool(sqlstate) and sqlstate.startswith("57")


@dataclass(frozen=True)
class Missing:
    """A dependency an error says is missing.

    `kind` is one of :data:`PATTERNS`' keys; `schema` is the qualifier the statement
    used, if any; `args` are argument types as the server printed them (functions),
    the left and right types (operators) or the access method (operator classes).
    """

    kind: str
    name: str
    schema: str | None = None
    args: tuple[str, ...] = ()

    @property
    def pattern(self) -> str:
        return PATTERNS[self.kind][1]

    def describe(self) -> str:
        qualified = f"{self.schema}.{self.name}" if self.schema else self.name
        if self.kind in ("function", "procedure") and self.args == ANY_ARGS:
            return f"{self.kind} {qualified}"
        if self.kind in ("function", "procedure"):
            return f"{self.kind} {qualified}({', '.join(self.args)})"
        if self.kind == "operator":
            left, right = self.args
            return "operator " + " ".join(p for p in (left, qualified, right) if p)
        if self.kind == "default_opclass":
            return f"default operator class for type {self.name} and access method {self.args[0]}"
        if self.kind == "opclass":
            return f"operator class {qualified} for access method {self.args[0]}"
        if self.kind == "transform":
            return f"transform for type {self.name} language {self.args[0]}"
        return f"{LABELS.get(self.kind, self.kind)} {qualified}"


#: The arguments of a function named without them (``GRANT ... ON FUNCTION f``): any.
ANY_ARGS = ("...",)

LABELS = {
    "extension": "extension",
    "fdw": "foreign-data wrapper",
    "access_method": "access method",
    "tablesample": "tablesample method",
    "tstemplate": "text search template",
    "tsparser": "text search parser",
    "tsdictionary": "text search dictionary",
    "tsconfig": "text search configuration",
}

_IDENT = r'(?:"(?:[^"]|"")+"|[^\s."(]+)'
_QUALIFIED = rf"(?:(?P<schema>{_IDENT})\.)?(?P<name>{_IDENT})"
_QUOTED = r'"(?P<qualified>.+)"'

#: kind -> (SQLSTATE, message template, message regex). The template is the key of
#: ``heal.universal_error_patterns``, where the fix descriptions live. The regexes are
#: compiled when first used (``re`` keeps them): the DDL trigger imports this too.
PATTERNS: dict[str, tuple[str, str, str]] = {
    kind: (state, template, regex)
    for kind, state, template, regex in [
        ("schema", INVALID_SCHEMA_NAME, 'schema "%" does not exist',
         r'^schema "(?P<name>.+)" does not exist$'),
        ("function", UNDEFINED_FUNCTION, "function %(%) does not exist",
         rf"^function {_QUALIFIED}\((?P<args>.*)\) does not exist$"),
        ("procedure", UNDEFINED_FUNCTION, "procedure %(%) does not exist",
         rf"^procedure {_QUALIFIED}\((?P<args>.*)\) does not exist$"),
        ("operator", UNDEFINED_FUNCTION, "operator does not exist: % % %",
         r"^operator does not exist: (?:(?P<left>.+?) )?(?:(?P<schema>[^\s.]+)\.)?"
         r"(?P<name>[-+*/<>=~!@#%^&|`?]+) (?P<right>.+)$"),
        ("type", UNDEFINED_OBJECT, 'type "%" does not exist',
         rf"^type {_QUOTED} does not exist$"),
        ("opclass", UNDEFINED_OBJECT, 'operator class "%" does not exist for access method "%"',
         rf'^operator class {_QUOTED} does not exist for access method "(?P<am>.+)"$'),
        ("default_opclass", UNDEFINED_OBJECT,
         'data type % has no default operator class for access method "%"',
         r'^data type (?P<name>.+) has no default operator class for access method "(?P<am>.+)"$'),
        ("access_method", UNDEFINED_OBJECT, 'access method "%" does not exist',
         r'^access method "(?P<name>.+)" does not exist$'),
        ("tablesample", UNDEFINED_OBJECT, 'tablesample method % does not exist',
         rf"^tablesample method {_QUALIFIED} does not exist$"),
        ("tstemplate", UNDEFINED_OBJECT, 'text search template "%" does not exist',
         rf"^text search template {_QUOTED} does not exist$"),
        ("tsparser", UNDEFINED_OBJECT, 'text search parser "%" does not exist',
         rf"^text search parser {_QUOTED} does not exist$"),
        ("tsdictionary", UNDEFINED_OBJECT, 'text search dictionary "%" does not exist',
         rf"^text search dictionary {_QUOTED} does not exist$"),
        ("tsconfig", UNDEFINED_OBJECT, 'text search configuration "%" does not exist',
         rf"^text search configuration {_QUOTED} does not exist$"),
        ("role", UNDEFINED_OBJECT, 'role "%" does not exist',
         r'^role "(?P<name>.+)" does not exist$'),
        ("transform", UNDEFINED_OBJECT, 'transform for type % language "%" does not exist',
         r'^transform for type (?P<name>.+) language "(?P<lang>.+)" does not exist$'),
        # CREATE EXTENSION without CASCADE: what it requires is installed first.
        ("extension", UNDEFINED_OBJECT, 'required extension "%" is not installed',
         r'^required extension "(?P<name>.+)" is not installed$'),
        ("fdw", UNDEFINED_OBJECT, 'foreign-data wrapper "%" does not exist',
         r'^foreign-data wrapper "(?P<name>.+)" does not exist$'),
        # A table or view an extension provides (pg_stat_statements); never a table of
        # the user's found elsewhere (the planner looks for extensions' relations only).
        ("relation", UNDEFINED_TABLE, 'relation "%" does not exist',
         rf"^relation {_QUOTED} does not exist$"),
    ]
}  # fmt: skip


def unquote(ident: str) -> str:
    """``"My Name"`` -> ``My Name``; plain identifiers as the server printed them."""
    if len(ident) >= 2 and ident[0] == ident[-1] == '"':
        return ident[1:-1].replace('""', '"')
    return ident


def split_qualified(text: str) -> tuple[str | None, str]:
    """Split ``schema.name`` as printed inside a quoted message (no quoting there)."""
    schema, dot, name = text.rpartition(".")
    return (schema or None, name) if dot else (None, text)


def split_args(text: str) -> tuple[str, ...]:
    """Split a printed argument list, keeping ``numeric(10, 2)`` together."""
    args, depth, current = [], 0, []
    for char in text:
        if char == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        depth += char == "("
        depth -= char == ")"
        current.append(char)
    tail = "".join(current).strip()
    if tail or args:
        args.append(tail)
    return tuple(args)


#: The longest message classified. The server's messages that name a missing object
#: are short (a name is at most 63 bytes; a function's argument types add a few dozen
#: each); a longer one is made up, and must not cost a pattern's backtracking.
MAX_MESSAGE = 4096


def plausible(message: str) -> bool:
    """Whether `message` may be one of the server's that name an object: short, one line."""
    return len(message) <= MAX_MESSAGE and "\n" not in message


#: A function named only inside a string: ``'f'::regproc`` (or regprocedure's spelling).
_IN_A_STRING = re.compile(r'^function "(?P<name>[^"(]+)(?:\((?P<args>.*)\))?" does not exist$')


def named_in_string(sqlstate: str, message: str) -> str | None:
    """The function an error says is missing when only a string named it (a ``::regproc``
    cast): not a call pgheal can read its needs from."""
    message = message.strip()
    if sqlstate != UNDEFINED_FUNCTION or not plausible(message):
        return None
    match = _IN_A_STRING.match(message)
    return match["name"] if match else None


def classify(sqlstate: str, message: str) -> Missing | None:
    """What is missing according to this error, or None when it is not a missing dependency.

    A message with a line break inside, or longer than :data:`MAX_MESSAGE`, is none of
    the server's: no pattern can match it (``.`` stops at a line break), and trying
    costs time that grows with the square of its length, where no cancel reaches.
    """
    message = message.strip()
    if not plausible(message):
        return None
    for kind, (state, _template, regex) in PATTERNS.items():
        if state != sqlstate:
            continue
        match = re.match(regex, message)
        if match:
            return _missing(kind, match.groupdict())
    return None


def _missing(kind: str, groups: dict[str, str | None]) -> Missing:
    if groups.get("qualified"):
        schema, name = split_qualified(groups["qualified"])
    else:
        schema = unquote(groups["schema"]) if groups.get("schema") else None
        name = unquote(groups["name"] or "") if kind != "schema" else groups["name"] or ""
    if kind in ("function", "procedure"):
        return Missing(kind, name, schema, split_args(groups["args"] or ""))
    if kind == "operator":
        return Missing(kind, name, schema, (groups["left"] or "", groups["right"] or ""))
    if kind == "type" and name.endswith("[]"):
        name = name[:-2]  # an array of a missing type needs the same fix as the type
    if kind == "opclass":
        return Missing(kind, name, schema, (groups["am"] or "",))
    if kind == "default_opclass":
        return Missing(kind, normalize_type(name), None, (groups["am"] or "",))
    if kind == "transform":  # the type as format_type prints it: maybe qualified
        return Missing(kind, normalize_type(split_qualified(name)[1]), None,
                       (groups["lang"] or "",))  # fmt: skip
    return Missing(kind, name, schema)
