"""Learn what each available extension provides by parsing its install scripts.

The server's extension directory is the ground truth: the scripts that
``CREATE EXTENSION`` would run are parsed with pglast and every object they
create is recorded, so any extension on the host is known without a hand-kept
table.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType

from .analyze import parse
from .typenames import normalize_type

_SCRIPT = re.compile(r"^(?P<ext>.+?)--(?P<a>[^-]+(?:-[^-]+)*?)(?:--(?P<b>.+))?\.sql$")
_PSQL_LINE = re.compile(r"^\s*\\.*$", re.MULTILINE)


@dataclass(frozen=True)
class ProvidedObject:
    """An object an extension script creates.

    `args` holds argument type names (functions), left/right types (operators) or
    the access method (operator classes and families).
    """

    kind: str
    name: str
    args: tuple[str, ...] = ()
    min_args: int = 0
    max_args: int | None = 0


def script_files(extension: str, filenames: Iterable[str]) -> tuple[dict[str, str], dict]:
    """Index an extension's scripts: install scripts by version, updates as a graph."""
    installs: dict[str, str] = {}
    updates: dict[str, list[tuple[str, str]]] = {}
    prefix = f"{extension}--"
    for filename in filenames:
        if not filename.startswith(prefix) or not filename.endswith(".sql"):
            continue
        versions = filename[len(prefix) : -4].split("--")
        if len(versions) == 1:
            installs[versions[0]] = filename
        elif len(versions) == 2:
            updates.setdefault(versions[0], []).append((versions[1], filename))
    return installs, updates


def install_chain(extension: str, version: str, filenames: Iterable[str]) -> list[str]:
    """The scripts CREATE EXTENSION runs for `version`: an install script, then updates.

    Like the server, prefer a direct install script, otherwise the shortest path
    from an install script through update scripts.
    """
    installs, updates = script_files(extension, filenames)
    if version in installs:
        return [installs[version]]
    queue = deque((start, [script]) for start, script in sorted(installs.items()))
    seen = set(installs)
    while queue:
        current, path = queue.popleft()
        for target, script in sorted(updates.get(current, ())):
            if target == version:
                return [*path, script]
            if target not in seen:
                seen.add(target)
                queue.append((target, [*path, script]))
    return []


def prepare(text: str, schema: str = "extensions") -> str:
    """Make an extension script parseable: drop psql lines, fill in the placeholders."""
    text = _PSQL_LINE.sub("", text)
    return (
        text.replace("@extschema@", schema)
        .replace("@extowner@", "postgres")
        .replace("MODULE_PATHNAME", "$libdir/extension")
    )


def _name(names: list) -> str:
    return names[-1]["String"]["sval"]


def _type_name(type_name: dict) -> str:
    """A TypeName's last name, with ``[]`` for an array."""
    name = _name(type_name["names"])
    if type_name.get("arrayBounds"):
        name += "[]"
    return name


def objects_in(sql: str, pglast: ModuleType) -> Iterator[ProvidedObject]:
    """Every object the script creates, in order.

    Reads the JSON parse tree: the backend hands the parser only to its checked entry
    point, whoever wrote the text.
    """
    for tree in parse(sql, pglast):
        ((kind, node),) = tree.items()
        yield from _objects(kind, node)


#: Statements that create a relation: the field naming it.
_RELATIONS = {"CreateStmt": "relation", "ViewStmt": "view", "CreateTableAsStmt": "into",
              "CreateSeqStmt": "sequence"}  # fmt: skip


def _objects(kind: str, node: dict) -> Iterator[ProvidedObject]:
    if kind == "CreateFunctionStmt":
        yield from _function(node)
    elif kind == "DefineStmt":
        yield from _define(node)
    elif kind == "CompositeTypeStmt":
        yield ProvidedObject("type", node["typevar"]["relname"])
    elif kind in ("CreateEnumStmt", "CreateRangeStmt"):
        yield ProvidedObject("type", _name(node["typeName"]))
    elif kind == "CreateDomainStmt":
        yield ProvidedObject("type", _name(node["domainname"]))
    elif kind == "CreateOpClassStmt":
        for_type = _type_name(node["datatype"])
        yield ProvidedObject("opclass", _name(node["opclassname"]), (node["amname"], for_type))
        if node.get("isDefault"):
            yield ProvidedObject("default_opclass", normalize_type(for_type), (node["amname"],))
    elif kind == "CreateOpFamilyStmt":
        yield ProvidedObject("opfamily", _name(node["opfamilyname"]), (node["amname"],))
    elif kind == "CreateAmStmt":
        yield ProvidedObject("access_method", node["amname"])
    elif kind in _RELATIONS:  # tables, views, materialized views, sequences
        relation = node.get(_RELATIONS[kind]) or {}
        relation = relation.get("rel", relation)  # CREATE ... AS: the target's RangeVar
        if relation.get("relname"):
            yield ProvidedObject("relation", relation["relname"])
    elif kind == "CreateTransformStmt":
        for_type = normalize_type(_type_name(node["type_name"]))
        yield ProvidedObject("transform", for_type, (node["lang"],))
    elif kind == "CreateFdwStmt":
        yield ProvidedObject("fdw", node["fdwname"])
    elif kind == "CreateCastStmt":
        yield ProvidedObject(
            "cast", "cast", (_type_name(node["sourcetype"]), _type_name(node["targettype"]))
        )


_INPUT_MODES = {"FUNC_PARAM_IN", "FUNC_PARAM_INOUT", "FUNC_PARAM_VARIADIC", "FUNC_PARAM_DEFAULT"}


def _parameters(items: list | None) -> list[dict]:
    """The FunctionParameter nodes of a list."""
    return [i["FunctionParameter"] for i in items or () if "FunctionParameter" in i]


def _function(node: dict) -> Iterator[ProvidedObject]:
    inputs = [p for p in _parameters(node.get("parameters")) if p["mode"] in _INPUT_MODES]
    variadic = any(p["mode"] == "FUNC_PARAM_VARIADIC" for p in inputs)
    required = [p for p in inputs if "defexpr" not in p and p["mode"] != "FUNC_PARAM_VARIADIC"]
    name = _name(node["funcname"])
    yield ProvidedObject(
        "procedure" if node.get("is_procedure") else "function",
        name,
        tuple(_type_name(p["argType"]) for p in inputs),
        min_args=len(required),
        max_args=None if variadic else len(inputs),
    )
    returns = node.get("returnType")
    if returns is not None and _name(returns["names"]) == "tsm_handler":
        yield ProvidedObject("tablesample", name)


_TEXT_SEARCH = {
    "OBJECT_TSTEMPLATE": "tstemplate",
    "OBJECT_TSPARSER": "tsparser",
    "OBJECT_TSDICTIONARY": "tsdictionary",
    "OBJECT_TSCONFIGURATION": "tsconfig",
}


def _define(node: dict) -> Iterator[ProvidedObject]:
    kind = node["kind"]
    name = _name(node["defnames"])
    if kind == "OBJECT_AGGREGATE":
        # args is [List of the parameters, or {} for (*), Integer]; absent when old-style
        args = node.get("args") or [{}]
        params = _parameters(args[0].get("List", {}).get("items"))
        types = tuple(_type_name(a["argType"]) for a in params if a.get("argType"))
        yield ProvidedObject("function", name, types, len(types), len(types))
    elif kind == "OBJECT_OPERATOR":
        sides = {
            d["DefElem"]["defname"].lower(): d["DefElem"].get("arg") or {}
            for d in node.get("definition") or ()
            if "DefElem" in d
        }
        left = _type_name(sides["leftarg"]["TypeName"]) if "leftarg" in sides else ""
        right = _type_name(sides["rightarg"]["TypeName"]) if "rightarg" in sides else ""
        yield ProvidedObject("operator", name, (left, right))
    elif kind == "OBJECT_TYPE":
        yield ProvidedObject("type", name)
    elif kind in _TEXT_SEARCH:
        yield ProvidedObject(_TEXT_SEARCH[kind], name)
    elif kind == "OBJECT_COLLATION":
        yield ProvidedObject("collation", name)
