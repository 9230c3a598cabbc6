"""Read a PostgreSQL error and say which dependency is missing.

The messages parsed here are the server's own (``src/backend/parser``); only the
SQLSTATE and message are used, never anything pasted into SQL: names found here
are always quoted before they reach a fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

UNDEFINED_FUNCTION = "42883"
UNDEFINED_OBJECT = "42704"
INVALID_SCHEMA_NAME = "3F000"

#: SQLSTATEs heal.migrate looks into; any other error fails as plain PostgreSQL would.
HEALABLE_SQLSTATES = frozenset({UNDEFINED_FUNCTION, UNDEFINED_OBJECT, INVALID_SCHEMA_NAME})


@dataclass(frozen=True)
class Missing:
    """A dependency an error says is missing.

    `kind` is one of ``schema``, ``function``, ``procedure``, ``type``,
    ``operator``, ``opclass``, ``access_method``; `schema` is the qualifier the
    statement used, if any; `args` are argument types as the server printed them.
    """

    kind: str
    name: str
    schema: str | None = None
    args: tuple[str, ...] = ()
    pattern: str = ""

    def describe(self) -> str:
        qualified = f"{self.schema}.{self.name}" if self.schema else self.name
        if self.kind in ("function", "procedure"):
            return f"{self.kind} {qualified}({', '.join(self.args)})"
        if self.kind == "operator":
            return f"operator {' '.join(a for a in (self.args[0], qualified, self.args[1]) if a)}"
        return f"{self.kind.replace('_', ' ')} {qualified}"


_IDENT = r'(?:"(?:[^"]|"")+"|[^\s."(]+)'
_QUALIFIED = rf"(?:(?P<schema>{_IDENT})\.)?(?P<name>{_IDENT})"

_PATTERNS: list[tuple[str, str, re.Pattern[str]]] = [
    (INVALID_SCHEMA_NAME, "schema", re.compile(r'^schema "(?P<name>.+)" does not exist$')),
    (
        UNDEFINED_FUNCTION,
        "function",
        re.compile(rf"^(?P<kind>function|procedure) {_QUALIFIED}\((?P<args>.*)\) does not exist$"),
    ),
    (
        UNDEFINED_FUNCTION,
        "operator",
        re.compile(r"^operator does not exist: (?P<body>.+)$"),
    ),
    (UNDEFINED_OBJECT, "type", re.compile(r'^type "(?P<qualified>.+)" does not exist$')),
    (
        UNDEFINED_OBJECT,
        "opclass",
        re.compile(
            r'^operator class "(?P<qualified>.+)" does not exist for access method "(?P<am>.+)"$'
        ),
    ),
    (
        UNDEFINED_OBJECT,
        "access_method",
        re.compile(r'^access method "(?P<name>.+)" does not exist$'),
    ),
]

#: Message templates of the built-in patterns, by kind of missing object: the keys of
#: ``heal.universal_error_patterns`` (where their descriptions live).
PATTERNS: dict[str, str] = {
    "schema": 'schema "%" does not exist',
    "function": "function %(%) does not exist",
    "procedure": "procedure %(%) does not exist",
    "operator": "operator does not exist: % % %",
    "type": 'type "%" does not exist',
    "opclass": 'operator class "%" does not exist for access method "%"',
    "access_method": 'access method "%" does not exist',
}


def _template(kind: str) -> str:
    return PATTERNS[kind]


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


def classify(sqlstate: str, message: str) -> Missing | None:
    """What is missing according to this error, or None when it is not a missing dependency."""
    for state, pattern, regex in _PATTERNS:
        if state != sqlstate:
            continue
        match = regex.match(message.strip())
        if not match:
            continue
        groups = match.groupdict()
        if pattern == "schema":
            return Missing("schema", groups["name"], pattern=_template("schema"))
        if pattern == "function":
            kind = groups["kind"]
            return Missing(
                kind,
                unquote(groups["name"]),
                unquote(groups["schema"]) if groups["schema"] else None,
                split_args(groups["args"]),
                pattern=_template(kind),
            )
        if pattern == "operator":
            return _operator(groups["body"])
        if pattern == "access_method":
            return Missing("access_method", groups["name"], pattern=_template("access_method"))
        schema, name = split_qualified(groups["qualified"])
        if pattern == "opclass":
            return Missing("opclass", name, schema, (groups["am"],), pattern=_template("opclass"))
        name, is_array = (name[:-2], True) if name.endswith("[]") else (name, False)
        del is_array  # an array of a missing type needs the same fix as the type
        return Missing("type", name, schema, pattern=_template("type"))
    return None


_OPERATOR = re.compile(
    r"^(?:(?P<left>.+?) )?(?:(?P<schema>[^\s.]+)\.)?(?P<op>[-+*/<>=~!@#%^&|`?]+) (?P<right>.+)$"
)


def _operator(body: str) -> Missing | None:
    """``text % text``, ``- integer``, ``a OPERATOR(s.@>) b`` as the server prints them."""
    match = _OPERATOR.match(body)
    if not match:
        return None
    return Missing(
        "operator",
        match["op"],
        match["schema"],
        (match["left"] or "", match["right"]),
        pattern=_template("operator"),
    )
