"""``search_path`` values as the server reads and writes them.

A search_path is a list of identifiers: ``"my,schema", public`` is two schemas, the
first with a comma in its name. Splitting on commas by hand mangles such names, so
:func:`split_path` follows the server's own ``SplitIdentifierString`` (varlena.c),
which checks the setting whenever it is set: double quotes delimit a name (``""`` is
a quote inside it), unquoted names are lower-cased, white space around names is
ignored. :func:`join_path` writes a list back, every name quoted as
``quote_ident`` would. Pure Python: the same rules serve the trigger, the planner
and the scan, and are unit tested against a real server.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Names longer than this many bytes are truncated by the server (NAMEDATALEN - 1).
MAX_NAME_BYTES = 63

_SAFE = re.compile(r"[a-z_][a-z0-9_$]*")

#: What the server's scanner counts as white space.
_SPACE = frozenset(" \t\n\r\f")


class PathSyntaxError(ValueError):
    """A value the server would reject as a search_path."""


def _downcase(name: str) -> str:
    """ASCII letters only, as the server downcases identifiers in UTF-8."""
    return name.translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _truncate(name: str) -> str:
    encoded = name.encode()
    if len(encoded) <= MAX_NAME_BYTES:
        return name
    return encoded[:MAX_NAME_BYTES].decode(errors="ignore")


def split_path(value: str) -> list[str]:
    """The schema names of a search_path value, as the server reads it.

    An empty value is an empty list; ``""`` (one empty quoted name, what
    ``SET search_path = ''`` stores) is an empty list too, since no schema has
    that name.
    """
    names: list[str] = []
    i, n = 0, len(value)
    while i < n and value[i] in _SPACE:
        i += 1
    if i == n:
        return names
    while True:
        if i < n and value[i] == '"':
            parts = []
            i += 1
            while True:
                end = value.find('"', i)
                if end < 0:
                    raise PathSyntaxError(f"unterminated quoted name in search_path {value!r}")
                parts.append(value[i:end])
                i = end + 1
                if i < n and value[i] == '"':
                    parts.append('"')
                    i += 1
                    continue
                break
            name = "".join(parts)
        else:
            start = i
            while i < n and value[i] != "," and value[i] not in _SPACE:
                i += 1
            if i == start:
                raise PathSyntaxError(f"empty name in search_path {value!r}")
            name = _downcase(value[start:i])
        names.append(_truncate(name))
        while i < n and value[i] in _SPACE:
            i += 1
        if i == n:
            break
        if value[i] != ",":
            raise PathSyntaxError(f"invalid search_path {value!r}: expected a comma at {i + 1}")
        i += 1
        while i < n and value[i] in _SPACE:
            i += 1
    return [name for name in names if name]


def quote_name(name: str) -> str:
    """`name` as it stands in a search_path value: bare when :func:`split_path` reads it
    back unchanged (keywords do not matter there: the value is not SQL)."""
    if _SAFE.fullmatch(name):
        return name
    return '"' + name.replace('"', '""') + '"'


def join_path(names: Iterable[str]) -> str:
    """A search_path value naming exactly `names`, in order."""
    return ", ".join(quote_name(name) for name in names)


def appended(value: str, schema: str) -> str:
    """`value` with `schema` last, unless it is on the path already."""
    names = split_path(value)
    if schema in names:
        return value
    return join_path([*names, schema]) if names else quote_name(schema)


def resolved(value: str, user: str) -> list[str]:
    """The names of `value` with ``$user`` standing for `user`, as the server resolves it."""
    return [user if name == "$user" else name for name in split_path(value)]


def relation_lookup(names: list[str]) -> list[str]:
    """The schemas the server searches for an unqualified table on a path of `names`
    (``$user`` resolved), in order: the session's temporary schema (``pg_temp``) and
    pg_catalog first, unless the path places them."""
    return [*(["pg_temp"] if "pg_temp" not in names else []),
            *(["pg_catalog"] if "pg_catalog" not in names else []), *names]  # fmt: skip
