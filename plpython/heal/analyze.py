"""Find, before running a script, the dependencies its statements will miss.

Works on pglast's JSON parse tree (plain dicts: much cheaper than AST objects) and a
:class:`Snapshot` of the catalogs. It follows what the script itself creates
(schemas, types, functions, extensions) and the ``search_path`` it sets, and only
reports a dependency that is visible nowhere on the path: anything else is left to
the reactive healer, which sees the server's real error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType

from .errors import ANY_ARGS, Missing
from .typenames import normalize_type

#: Pseudo-types the parser expands; they are not in pg_type.
_SERIALS = frozenset({"serial", "bigserial", "smallserial", "serial2", "serial4", "serial8"})
_ALWAYS = ("pg_catalog", "pg_temp")
CORE_ACCESS_METHODS = frozenset({"btree", "hash", "gist", "gin", "spgist", "brin", "heap"})


@dataclass
class Snapshot:
    """What the catalogs hold, for the names the script mentions."""

    schemas: set[str] = field(default_factory=set)
    #: function name -> [(schema, min args, max args or None)]
    functions: dict[str, list[tuple[str, int, int | None]]] = field(default_factory=dict)
    types: dict[str, set[str]] = field(default_factory=dict)
    operators: dict[str, set[str]] = field(default_factory=dict)
    opclasses: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    tablesamples: dict[str, set[str]] = field(default_factory=dict)
    access_methods: set[str] = field(default_factory=set)
    tsdictionaries: dict[str, set[str]] = field(default_factory=dict)
    tsconfigs: dict[str, set[str]] = field(default_factory=dict)
    fdws: set[str] = field(default_factory=set)
    #: (type, language) of each transform
    transforms: set[tuple[str, str]] = field(default_factory=set)
    #: (schema, table, column) -> type name, of existing tables' indexed columns
    column_types: dict[tuple[str | None, str, str], str] = field(default_factory=dict)
    #: (type, access method) of plain types with no default operator class there
    no_default_opclass: set[tuple[str, str]] = field(default_factory=set)
    #: extension -> the extensions it requires (its control file's)
    requires: dict[str, list[str]] = field(default_factory=dict)
    #: the installed extensions among those the script names or requires
    installed: set[str] = field(default_factory=set)
    #: extension -> {(kind, name)} it creates (from heal.extension_objects)
    extension_objects: dict[str, set[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class Names:
    """The names a script mentions, to fetch a :class:`Snapshot` for."""

    schemas: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    operators: set[str] = field(default_factory=set)
    opclasses: set[str] = field(default_factory=set)
    tablesamples: set[str] = field(default_factory=set)
    extensions: set[str] = field(default_factory=set)
    access_methods: set[str] = field(default_factory=set)
    tsdictionaries: set[str] = field(default_factory=set)
    tsconfigs: set[str] = field(default_factory=set)
    fdws: set[str] = field(default_factory=set)
    #: the types transforms are wanted for
    transforms: set[str] = field(default_factory=set)
    #: (schema, table, column, access method) of index columns whose type the catalogs know
    index_columns: set[tuple[str | None, str, str, str]] = field(default_factory=set)
    #: (type, access method) pairs to know the default operator class of
    opclass_defaults: set[tuple[str, str]] = field(default_factory=set)
    #: the session's search_path, for the tables an unqualified name means
    path: list[str] = field(default_factory=list)
    #: names some statement qualifies with a schema
    qualified: set[str] = field(default_factory=set)


def parse(sql: str, pglast: ModuleType) -> list[dict]:
    """The statements' parse trees, in order."""
    return trees(pglast.parser.parse_sql_json(sql))


def trees(tree_json: str) -> list[dict]:
    """The statements' parse trees in the JSON ``pglast.parser.parse_sql_json`` returns."""
    return [raw["stmt"] for raw in json.loads(tree_json)["stmts"]]


def with_texts(tree_json: str, sql: str) -> Iterator[tuple[dict, str | None]]:
    """Each statement's tree, with its own text where a PL/pgSQL body needs it."""
    raw = None
    for stmt in json.loads(tree_json)["stmts"]:
        ((kind, _),) = stmt["stmt"].items()
        if kind not in ("CreateFunctionStmt", "DoStmt"):
            yield stmt["stmt"], None
            continue
        raw = raw if raw is not None else sql.encode()  # the parser's positions count bytes
        start = stmt.get("stmt_location", 0)
        end = start + stmt["stmt_len"] if stmt.get("stmt_len") else len(raw)
        yield stmt["stmt"], raw[start:end].decode(errors="replace")


#: Fields that hold a TypeName directly (the JSON wraps only generic nodes in their type).
_TYPE_FIELDS = frozenset({"typeName", "returnType", "argType", "ofTypename"})


def _walk(node: object) -> Iterator[tuple[str, dict]]:
    """Every (node type, fields) pair in a tree."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, value in current.items():
                if isinstance(value, dict):
                    if key[:1].isupper():
                        yield key, value
                    elif key in _TYPE_FIELDS and "names" in value:
                        yield "TypeName", value
                stack.append(value)
        elif isinstance(current, list):
            stack.extend(current)


def _names(items: list | None) -> list[str]:
    return [i["String"]["sval"] for i in items or () if "String" in i]


def _qualified(items: list | None) -> tuple[str | None, str]:
    parts = _names(items)
    return (parts[-2] if len(parts) > 1 else None), (parts[-1] if parts else "")


def _const_string(node: dict) -> str | None:
    value = node.get("A_Const", {}).get("sval")
    return value.get("sval", "") if value is not None else None


@dataclass
class Statement:
    """What one statement needs and what it creates."""

    refs: list[Missing] = field(default_factory=list)
    #: What a PL/pgSQL function's body names: needed when it is called, so looked up
    #: against everything the script creates, and healed only where an extension can.
    deferred: list[Missing] = field(default_factory=list)
    creates: set[tuple[str, str]] = field(default_factory=set)
    extensions: list[str] = field(default_factory=list)
    #: extension -> schema, of a CREATE EXTENSION ... SCHEMA
    homes: dict[str, str] = field(default_factory=dict)
    #: extensions a CREATE EXTENSION without CASCADE installs: what they require must be
    requiring: list[str] = field(default_factory=list)
    search_path: list[str] | None = None
    path_unknown: bool = False
    #: It creates an object without naming a schema: in the first one on the path.
    creates_on_path: bool = False
    #: Index columns with no operator class, whose type's default decides:
    #: (schema, table, column, access method, type when the statement says it).
    index_columns: list[tuple[str | None, str, str, str, str | None]] = field(default_factory=list)
    #: table -> {column: type} of a CREATE TABLE (for the script's later indexes)
    columns: dict[str, dict[str, str]] = field(default_factory=dict)

    def kept(self) -> Statement:
        """This analysis, or the one shared :data:`NOTHING` when it found nothing: most
        statements of a long script (INSERTs, plain DDL) need and create nothing, and
        the script's analysis must not cost memory for each of them."""
        return NOTHING if self == NOTHING else self


#: The analysis of a statement that needs, creates and changes nothing (never mutated).
NOTHING = Statement()


def _created_schema(kind: str, body: dict) -> str | None:
    """The schema a CREATE puts its object in, when the statement names one."""
    if kind in ("CreateStmt", "CreateSeqStmt"):
        rel = body.get("relation") or body.get("sequence") or {}
        return rel.get("schemaname")
    if kind == "ViewStmt":
        return (body.get("view") or {}).get("schemaname")
    if kind == "CreateTableAsStmt":
        return ((body.get("into") or {}).get("rel") or {}).get("schemaname")
    if kind == "CompositeTypeStmt":
        return (body.get("typevar") or {}).get("schemaname")
    if kind in ("CreateFunctionStmt", "DefineStmt", "CreateEnumStmt", "CreateDomainStmt",
                "CreateRangeStmt"):  # fmt: skip
        names = (body.get("funcname") or body.get("defnames") or body.get("typeName")
                 or body.get("domainname"))  # fmt: skip
        return _qualified(names)[0]
    if kind == "AlterObjectSchemaStmt":
        return body.get("newschema")
    return None


#: CREATEs whose object goes into the first schema of the search_path when unqualified.
CREATES_ON_PATH = frozenset({"CreateStmt", "CreateSeqStmt", "ViewStmt", "CreateTableAsStmt",
                              "CompositeTypeStmt", "CreateFunctionStmt", "DefineStmt",
                              "CreateEnumStmt", "CreateDomainStmt", "CreateRangeStmt"})  # fmt: skip


def _on_path(kind: str, body: dict) -> bool:
    """Whether this CREATE puts its object in the path's first schema (not in one it
    names, nor in the session's temporary one)."""
    if kind not in CREATES_ON_PATH or _created_schema(kind, body) is not None:
        return False
    relation = body.get("relation") or body.get("sequence") or body.get("view") or (
        (body.get("into") or {}).get("rel")) or {}  # fmt: skip
    return relation.get("relpersistence") != "t"


def _creates(kind: str, body: dict) -> set[tuple[str, str]]:
    if kind == "CreateSchemaStmt":
        return {("schema", body.get("schemaname") or "")}
    if kind in ("CreateStmt", "ViewStmt"):
        rel = body.get("relation") or body.get("view") or {}
        return {("type", rel.get("relname", ""))}
    if kind == "CreateFunctionStmt":
        kind_ = "procedure" if body.get("is_procedure") else "function"
        return {(kind_, _qualified(body.get("funcname"))[1])}
    if kind == "CompositeTypeStmt":
        return {("type", (body.get("typevar") or {}).get("relname", ""))}
    if kind in ("CreateEnumStmt", "CreateRangeStmt"):
        return {("type", _qualified(body.get("typeName"))[1])}
    if kind == "CreateDomainStmt":
        return {("type", _qualified(body.get("domainname"))[1])}
    if kind == "DefineStmt":
        what = {"OBJECT_TYPE": "type", "OBJECT_AGGREGATE": "function",
                "OBJECT_OPERATOR": "operator"}.get(body.get("kind", ""))  # fmt: skip
        return {(what, _qualified(body.get("defnames"))[1])} if what else set()
    if kind == "CreateOpClassStmt":
        return {("opclass", _qualified(body.get("opclassname"))[1])}
    return set()


def sql_body(body: dict) -> str | None:
    """The string body of a ``LANGUAGE sql`` function: the server checks it at creation."""
    options = {
        o["DefElem"]["defname"]: o["DefElem"].get("arg")
        for o in body.get("options") or ()
        if "DefElem" in o
    }
    language = (options.get("language") or {}).get("String", {}).get("sval")
    as_ = options.get("as") or {}
    items = as_.get("List", {}).get("items") or []
    if language != "sql" or len(items) != 1 or "String" not in items[0]:
        return None
    return items[0]["String"]["sval"]


def statement(tree: dict, pglast: ModuleType | None = None, text: str | None = None) -> Statement:
    """The references, creations and search_path changes of one parsed statement.

    With `pglast`, the string body of a SQL function is looked into too; with the
    statement's `text` as well, the static SQL of a PL/pgSQL body (a function's, whose
    needs wait for its first call; a DO block's, which runs now).
    """
    ((kind, body),) = tree.items()
    result = Statement(creates=_creates(kind, body), creates_on_path=_on_path(kind, body))
    if kind == "DefineStmt" and body.get("kind") == "OBJECT_OPERATOR":
        # FUNCTION = f, RESTRICT = f, ... name functions, which the tree spells as types.
        body = {**body, "definition": [d for d in body.get("definition") or ()
                if (d.get("DefElem") or {}).get("defname") not in _OPERATOR_FUNCTIONS]}  # fmt: skip
    if kind == "CreateFunctionStmt" and pglast is not None:
        sql_text = sql_body(body)
        if sql_text:
            try:
                inner = parse(sql_text, pglast)
            except pglast.parser.ParseError:
                inner = []  # the server reports it
            for node in inner:
                result.refs += statement(node, pglast).refs
    if kind in ("CreateFunctionStmt", "DoStmt") and pglast is not None and text is not None:
        found = plpgsql_refs(kind, body, text, pglast)
        if kind == "DoStmt":
            result.refs += found
        else:
            result.deferred += found
    schema = _created_schema(kind, body)
    if schema:
        result.refs.append(Missing("schema", schema))
    result.refs += _statement_refs(kind, body)
    if kind == "CreateExtensionStmt":
        result.extensions.append(body.get("extname", ""))
        if "cascade" not in _options(body):
            result.requiring.append(body.get("extname", ""))
        schema = (((_options(body).get("schema") or {}).get("String")) or {}).get("sval")
        if schema:
            result.homes[body.get("extname", "")] = schema
    if kind == "VariableSetStmt" and body.get("name") == "search_path":
        values = [_const_string(a) for a in body.get("args") or ()]
        if body.get("kind") == "VAR_SET_VALUE" and None not in values:
            result.search_path = [v for v in values if v]
        else:
            result.path_unknown = True
    access_method = body.get("accessMethod") if kind == "IndexStmt" else None
    if access_method:
        result.refs.append(Missing("access_method", access_method))
    _index_columns(kind, body, result)
    for node_type, node in _walk(body):
        ref = _reference(node_type, node, access_method)
        if ref is not None:
            result.refs.append(ref)
        if node_type == "FuncCall" and _qualified(node.get("funcname"))[1] == "set_config":
            args = node.get("args") or ()
            if len(args) >= 2 and _const_string(args[0]) == "search_path":
                value = _const_string(args[1])
                if value is None:
                    result.path_unknown = True
                else:
                    result.search_path = [
                        p.strip().strip('"') for p in value.split(",") if p.strip()
                    ]
    return result


#: The parts of CREATE OPERATOR that name functions (or other operators), not types.
_OPERATOR_FUNCTIONS = frozenset({"function", "procedure", "restrict", "join", "commutator",
                                 "negator"})  # fmt: skip

#: Access methods whose default operator classes core PostgreSQL lacks for most types
#: (btree and hash have one for nearly every type).
_EXTENSIBLE_AMS = frozenset({"gin", "gist", "brin", "spgist"})


def _index_columns(kind: str, body: dict, result: Statement) -> None:
    """The index columns an access method's default operator class must exist for: a
    CREATE INDEX's plain columns, a CREATE TABLE's EXCLUDE constraint's."""
    if kind == "IndexStmt":
        am = body.get("accessMethod") or "btree"
        relation = body.get("relation") or {}
        if am in _EXTENSIBLE_AMS and relation.get("relname"):
            for item in body.get("indexParams") or ():
                elem = item.get("IndexElem") or {}
                if elem.get("name") and not elem.get("opclass"):
                    where = (relation.get("schemaname"), relation["relname"], elem["name"])
                    result.index_columns.append((*where, am, None))
    elif kind == "CreateStmt":
        relation = body.get("relation") or {}
        types = {}
        for item in body.get("tableElts") or ():
            column = item.get("ColumnDef")
            if column and column.get("colname") and column.get("typeName"):
                types[column["colname"]] = normalize_type(
                    _qualified(column["typeName"].get("names"))[1]
                )
        if relation.get("relname"):
            result.columns[relation["relname"]] = types
        for item in body.get("tableElts") or ():
            constraint = item.get("Constraint") or {}
            am = constraint.get("access_method") or "btree"
            if constraint.get("contype") != "CONSTR_EXCLUSION" or am not in _EXTENSIBLE_AMS:
                continue
            for pair in constraint.get("exclusions") or ():
                elem = (((pair.get("List") or {}).get("items") or [{}])[0]).get("IndexElem", {})
                name = elem.get("name")
                if name and not elem.get("opclass") and name in types:
                    result.index_columns.append((None, relation.get("relname", ""), name, am,
                                                 types[name]))  # fmt: skip


def _statement_refs(kind: str, body: dict) -> list[Missing]:
    """What a statement names outside its expressions: the dictionaries and
    configurations an ALTER TEXT SEARCH changes, a server's wrapper, a function's
    transforms, the schemas a GRANT is on."""
    if kind == "AlterTSDictionaryStmt":
        schema, name = _qualified(body.get("dictname"))
        return [Missing("tsdictionary", name, schema)]
    if kind == "AlterTSConfigurationStmt":
        schema, name = _qualified(body.get("cfgname"))
        refs = [Missing("tsconfig", name, schema)]
        for item in body.get("dicts") or ():
            d_schema, d_name = _qualified((item.get("List") or {}).get("items"))
            refs.append(Missing("tsdictionary", d_name, d_schema))
        return refs
    if kind == "CreateForeignServerStmt" and body.get("fdwname"):
        return [Missing("fdw", body["fdwname"])]
    if kind == "CreateFunctionStmt":
        options = _options(body)
        language = ((options.get("language") or {}).get("String") or {}).get("sval")
        types = ((options.get("transform") or {}).get("List") or {}).get("items") or ()
        return [Missing("transform", normalize_type(_qualified(t.get("TypeName", t).get(
                    "names"))[1]), None, (language or "",)) for t in types]  # fmt: skip
    if kind == "GrantStmt" and body.get("is_grant") and body.get("objtype") == "OBJECT_SCHEMA":
        return [Missing("schema", o["String"]["sval"]) for o in body.get("objects") or ()
                if "String" in o]  # fmt: skip
    if kind == "GrantStmt" and body.get("targtype") == "ACL_TARGET_OBJECT":
        objtype, objects = body.get("objtype"), body.get("objects") or ()
        if objtype in _ROUTINES:
            return [_routine(o["ObjectWithArgs"]) for o in objects if "ObjectWithArgs" in o]
        if objtype in ("OBJECT_TYPE", "OBJECT_DOMAIN"):
            return [_type_ref((o.get("List") or {}).get("items")) for o in objects]
        if objtype == "OBJECT_FDW":
            return [Missing("fdw", o["String"]["sval"]) for o in objects if "String" in o]
    named = _extensions_named(kind, body)
    if named:
        return [Missing("extension", name) for name in named]
    if kind == "CommentStmt":
        target, objtype = body.get("object") or {}, body.get("objtype")
        if objtype in _ROUTINES and "ObjectWithArgs" in target:
            return [_routine(target["ObjectWithArgs"])]
        if objtype in ("OBJECT_TYPE", "OBJECT_DOMAIN") and "TypeName" in target:
            return [_type_ref(target["TypeName"].get("names"))]
        if objtype == "OBJECT_SCHEMA" and "String" in target:
            return [Missing("schema", target["String"]["sval"])]
    return []


def _type_ref(names: list | None) -> Missing:
    schema, name = _qualified(names)
    return Missing("type", normalize_type(name), schema)


def _extensions_named(kind: str, body: dict) -> list[str]:
    """The extension an ALTER or COMMENT of an extension needs installed.

    Never a DROP's: installing what a statement removes fixes nothing, and would make
    a drop succeed that fails where the extension was there all along (``DROP
    EXTENSION cube`` while earthdistance needs it).
    """
    if kind == "AlterExtensionStmt":
        return [body.get("extname", "")]
    target = body.get("object") or {}
    if (kind == "AlterObjectSchemaStmt" and body.get("objectType") == "OBJECT_EXTENSION") or (
            kind == "CommentStmt" and body.get("objtype") == "OBJECT_EXTENSION"):  # fmt: skip
        return [target["String"]["sval"]] if "String" in target else []
    return []


#: What GRANT and COMMENT name as functions (a procedure is looked up as one too).
_ROUTINES = frozenset({"OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE",
                       "OBJECT_AGGREGATE"})  # fmt: skip


def _routine(node: dict) -> Missing:
    """The function an ObjectWithArgs names: its argument types, or any when it gives none."""
    schema, name = _qualified(node.get("objname"))
    if node.get("args_unspecified"):
        return Missing("function", name, schema, ANY_ARGS)
    args = tuple(normalize_type(_qualified(t.get("TypeName", t).get("names"))[1])
                 for t in node.get("objargs") or ())  # fmt: skip
    return Missing("function", name, schema, args)


#: Larger or deeper PL/pgSQL bodies are left to the server's own errors: libpg_query
#: compiles and prints a body recursively, once per nested block.
_PLPGSQL_BYTES = 1 << 20
_PLPGSQL_DEPTH = 64
_OPENS = frozenset({"BEGIN_P", "IF_P", "LOOP", "CASE"})


def _options(body: dict) -> dict:
    return {o["DefElem"]["defname"]: o["DefElem"].get("arg") for o in
            (body.get("options") or body.get("args") or ()) if "DefElem" in o}  # fmt: skip


def _plpgsql_body(kind: str, body: dict) -> str | None:
    """The source of a PL/pgSQL function's or DO block's body, if that is what it is."""
    options = _options(body)
    language = ((options.get("language") or {}).get("String") or {}).get("sval", "plpgsql")
    if kind == "CreateFunctionStmt":
        language = ((options.get("language") or {}).get("String") or {}).get("sval")
        items = ((options.get("as") or {}).get("List") or {}).get("items") or []
        source = items[0].get("String", {}).get("sval") if len(items) == 1 else None
    else:
        source = ((options.get("as") or {}).get("String") or {}).get("sval")
    return source if language == "plpgsql" else None


def _depth(source: str, pglast: ModuleType) -> int:
    """How deeply the blocks of a PL/pgSQL body nest, from its tokens (flat, cheap):
    BEGIN, IF, CASE and LOOP open a level, END closes one (END IF and the like)."""
    words = []
    for token in pglast.parser.scan(source):  # its positions count characters
        word = token.name
        if word == "IDENT" and source[token.start : token.end + 1].lower() == "loop":
            word = "LOOP"
        words.append(word)
    depth = deepest = 0
    closing = False
    for position, word in enumerate(words):
        if closing:  # END IF, END LOOP, END CASE: the END closed it, this opens nothing
            closing = False
            if word in _OPENS and _ends_statement(words, position + 1):
                continue
        if word in _OPENS:
            depth += 1
            deepest = max(deepest, depth)
        elif word == "END_P":
            depth -= 1
            closing = True
    return deepest


def _ends_statement(words: list[str], position: int) -> bool:
    """Whether the statement ends at `position`, or after one label there (END LOOP x;):
    what tells END LOOP from an END (of a CASE expression) before WHILE ... LOOP."""
    rest = words[position : position + 2]
    return rest[:1] in (["ASCII_59"], []) or rest == ["IDENT", "ASCII_59"]


def plpgsql_refs(kind: str, body: dict, text: str, pglast: ModuleType) -> list[Missing]:
    """What the static SQL of a PL/pgSQL body names (its expressions and statements;
    never EXECUTE's strings, which are known only when they run)."""
    source = _plpgsql_body(kind, body)
    if source is None or len(source) > _PLPGSQL_BYTES:
        return []
    try:
        if _depth(source, pglast) > _PLPGSQL_DEPTH:
            return []
        compiled = json.loads(pglast.parser.parse_plpgsql_json(text))
    except (pglast.parser.ParseError, RecursionError, ValueError):
        return []  # the server says what is wrong with it, when it is created or run
    refs: list[Missing] = []
    for query, mode in _expressions(compiled):
        try:
            trees = parse(_as_sql(query, mode), pglast)
        except (pglast.parser.ParseError, RecursionError):
            continue
        for tree in trees:
            refs += statement(tree, pglast).refs
    return refs


def _expressions(compiled: object) -> Iterator[tuple[str, int]]:
    """(query, parseMode) of every PLpgSQL_expr in a compiled body."""
    for node_type, node in _walk(compiled):
        if node_type == "PLpgSQL_expr" and isinstance(node.get("query"), str):
            yield node["query"], int(node.get("parseMode", 0))


def _as_sql(query: str, mode: int) -> str:
    """A PL/pgSQL expression as a statement to parse: a whole statement as it is (mode
    0), an expression as a SELECT (2), an assignment's value as a SELECT (3 to 5)."""
    if mode == 0:
        return query
    if mode >= 3:
        for sign in (":=", "="):
            if sign in query:
                query = query.split(sign, 1)[1]
                break
    return "SELECT " + query


def _reference(node_type: str, node: dict, access_method: str | None = None) -> Missing | None:
    """The dependency one node of the tree refers to, if it is one that can be missing."""
    if node_type == "FuncCall":
        schema, name = _qualified(node.get("funcname"))
        if schema != "pg_catalog":
            count = len(node.get("args") or ())
            if node.get("agg_within_group"):  # an ordered-set aggregate's sort keys are
                count += len(node.get("agg_order") or ())  # arguments too: percentile_cont
            return Missing("function", name, schema, ("unknown",) * count)
    elif node_type == "TypeName":
        schema, name = _qualified(node.get("names"))
        if not node.get("pct_type") and schema != "pg_catalog" and name not in _SERIALS:
            return Missing("type", name, schema)
    elif node_type == "IndexElem" and node.get("opclass"):
        schema, name = _qualified(node["opclass"])
        return Missing("opclass", name, schema, (access_method or "btree",))
    elif node_type == "RangeTableSample":
        schema, name = _qualified(node.get("method"))
        return Missing("tablesample", name, schema)
    elif node_type == "A_Expr" and node.get("kind") == "AEXPR_OP":
        schema, name = _qualified(node.get("name"))
        if schema != "pg_catalog":
            args = ("unknown" if node.get("lexpr") else "", "unknown")
            return Missing("operator", name, schema, args)
    return None


#: What :func:`signature` leaves to the full analysis: a schema moved to, operator
#: classes (which depend on the access method), table samples, types given by OID
#: (which the parser does not make), and WITHIN GROUP (its sort keys count as arguments).
_NOT_LONE = re.compile(r'"(?:newschema|opclass|RangeTableSample|typeOid|agg_within_group)":')
#: The schema a relation is qualified with (a RangeVar's, or CREATE SCHEMA's own).
_SCHEMA_NAME = re.compile(r'"schemaname":"((?:[^"\\]|\\.)*)"')
#: The mark of the schemas a signature names, as ``(SCHEMAS, names)``.
SCHEMAS = "schemas"
_STRING = r'\{"String":\{"sval":"((?:[^"\\]|\\.)*)"\}\}'
#: The start of a node :func:`_reference` reads (a FuncCall, TypeName or A_Expr: their
#: first field), up to what it reads there: the name list, then whether a function has
#: arguments, a type is a %TYPE, an operator a left operand. Quotes inside JSON
#: strings are escaped: this matches keys only.
_NODE = re.compile(
    r'\{"(?:funcname|names|kind":"\w+","name)":'
    r'\[(?:\{"String":\{"sval":"(?:[^"\\]|\\.)*"\}\},?)+\]'
    r'(?:,"setof":true)?(?:,"pct_type":true)?(?:,"args"|,"lexpr")?'
)
_KIND = re.compile(r'\{"stmt":\{"(\w+)":')
_ACCESS_METHOD = re.compile(r'"accessMethod":"((?:[^"\\]|\\.)*)"')
#: Statements that name what they create in a name list, not in a RangeVar.
_NAMED_CREATES = frozenset({"CreateFunctionStmt", "DefineStmt", "CreateEnumStmt",
                            "CreateDomainStmt", "CreateRangeStmt"})  # fmt: skip
#: The first name list of those: a comma after its first part means it names a schema.
_CREATED_NAME = re.compile(r'"(?:funcname|defnames|typeName|domainname)":\[' + _STRING + "(,?)")
_SQL_LANGUAGE = '{"DefElem":{"defname":"language","arg":{"String":{"sval":"sql"}}'
_STRING_BODY = re.compile(
    r'\{"DefElem":\{"defname":"as","arg":\{"List":\{"items":\[' + _STRING + r"\]"
)
_DECODER = json.JSONDecoder()


_PLPGSQL_LANGUAGE = '"sval":"plpgsql"'
#: Statements whose references are names (see :func:`_statement_refs`).
_NAMES_OUTSIDE = frozenset({"AlterTSDictionaryStmt", "AlterTSConfigurationStmt",
                            "CreateForeignServerStmt", "CommentStmt", "CreateExtensionStmt",
                            "AlterExtensionStmt"})  # fmt: skip
_ON_OBJECTS = re.compile(
    r'"objtype":"OBJECT_(?:SCHEMA|FUNCTION|PROCEDURE|ROUTINE|AGGREGATE|'
    r'TYPE|DOMAIN|FDW)"|"objectType":"OBJECT_EXTENSION"'
)
#: Statements whose names outside their expressions depend on what they are on.
_ON_SOME = frozenset({"GrantStmt", "AlterObjectSchemaStmt"})
_EXCLUSION = '"contype":"CONSTR_EXCLUSION"'
_TRANSFORM = '"defname":"transform"'


def signature(tree_json: str, pglast: ModuleType) -> tuple | None:
    """What :func:`statement` reads to find the refs of the one statement in `tree_json`.

    Two statements with equal signatures have equal refs, whatever their tables,
    columns and constants: the DDL trigger keeps the verdict per signature, and
    computes this without decoding the tree. The schemas the statement qualifies
    relations or what it creates with are part of it, marked (:func:`named_schemas`):
    whether they exist is the catalog's to say, each time. None for what it leaves to
    the full analysis, and for several statements.
    """
    if tree_json.count('{"stmt":{') != 1 or _NOT_LONE.search(tree_json):
        return None
    if _PLPGSQL_LANGUAGE in tree_json:
        return None  # a body's needs are in its text, which a signature leaves out
    kind = _KIND.search(tree_json)
    if kind is None:
        return None
    if kind[1] in _NAMES_OUTSIDE or (kind[1] in _ON_SOME and _ON_OBJECTS.search(tree_json)) or (
            _TRANSFORM in tree_json):  # fmt: skip
        return None  # _statement_refs reads names a signature leaves out
    if _EXCLUSION in tree_json:
        return None  # the columns' types decide: _index_columns
    head: tuple = (kind[1],)
    schemas = _SCHEMA_NAME.findall(tree_json)
    start = 0  # where the nodes start: after the name a CREATE FUNCTION gives
    if kind[1] == "IndexStmt":
        access_method = _ACCESS_METHOD.search(tree_json)  # the first is the statement's
        head = (kind[1], access_method and access_method[1])
    elif kind[1] in _NAMED_CREATES:
        created = _CREATED_NAME.search(tree_json)  # the first is the created object's
        if created is None:
            return None
        if created[2]:  # like app.f(): in schema app
            schemas.append(created[1])
        start = created.end()
        body = _STRING_BODY.search(tree_json) if _SQL_LANGUAGE in tree_json else None
        if body:
            try:
                inner = signature(pglast.parser.parse_sql_json(json.loads(f'"{body[1]}"')), pglast)
            except pglast.parser.ParseError:
                inner = ()  # the server reports it
            if inner is None:
                return None
            head = (kind[1], inner)
    if schemas:
        head = (*head, (SCHEMAS, tuple(schemas)))
    if '}}],"args"' not in tree_json:  # no function call has arguments
        return (*head, *_NODE.findall(tree_json, start))
    nodes = []
    for match in _NODE.finditer(tree_json, start):
        read = match[0]
        if read.endswith(',"args"'):  # the number of arguments counts too
            read += str(len(_DECODER.raw_decode(tree_json, match.start())[0]["args"]))
        nodes.append(read)
    return (*head, *nodes)


def columns_decide(shape: tuple) -> bool:
    """Whether a verdict on statements of `shape` holds only while their index columns'
    types have a default operator class: a CREATE INDEX of an access method core
    PostgreSQL has few of those for (:func:`indexed_columns` says which columns)."""
    return shape[0] == "IndexStmt" and shape[1] in _EXTENSIBLE_AMS


def indexed_columns(tree_json: str) -> tuple[str | None, str, list[str], str] | None:
    """The schema (None: unqualified), table, plain columns and access method of the one
    CREATE INDEX in `tree_json`: the columns whose types' defaults decide, as for
    :func:`statement`. None for a table another database's name qualifies."""
    body = json.loads(tree_json)["stmts"][0]["stmt"]["IndexStmt"]
    relation = body.get("relation") or {}
    if relation.get("catalogname") or not relation.get("relname"):
        return None
    found = Statement()
    _index_columns("IndexStmt", body, found)
    return (relation.get("schemaname"), relation["relname"],
            sorted({column for _, _, column, _, _ in found.index_columns}),
            body.get("accessMethod") or "btree")  # fmt: skip


def named_schemas(shape: tuple) -> set[str]:
    """The schemas a :func:`signature` names, a body's too, decoded."""
    found: set[str] = set()
    for part in shape:
        if isinstance(part, tuple):
            if len(part) == 2 and part[0] == SCHEMAS and isinstance(part[1], tuple):
                found.update(_decoded(name) for name in part[1])
            else:
                found |= named_schemas(part)
    return found


def _decoded(name: str) -> str:
    """A name as libpg_query's JSON writes it, decoded: without a backslash it is the
    name itself (the DDL trigger decodes the schemas of every statement it judges)."""
    return json.loads(f'"{name}"') if "\\" in name else name


#: What a tree holds that :func:`statement` never reads: where each node is, and the
#: values of constants (what an ``A_Const`` holds, in each of its forms; one of another
#: form stays, which only makes its shape its own). Both start with unescaped quotes,
#: which are never inside a JSON string, and each has a literal start the search skips to.
_PLACES = re.compile(r'location":-?\d+')
_CONSTANT = re.compile(
    r'\{"A_Const":\{"(?:sval":\{"sval":"(?:[^"\\]+|\\.)*"\}|fval":\{"fval":"[^"]*"\}'
    r'|bsval":\{"bsval":"[^"]*"\}|ival":\{(?:"ival":-?\d+)?\}|boolval":\{(?:"boolval":true)?\}'
    r'|isnull":true)'
)
_NO_CONSTANT = '{"A_Const":{"'
#: Statements whose analysis reads their text (a PL/pgSQL body's), and those whose
#: analysis reads a constant too (a search_path's value).
_READS_TEXT = ('{"CreateFunctionStmt":', '{"DoStmt":')
_READS_MORE = ('{"VariableSetStmt":', *_READS_TEXT)
_SETS_CONFIG = '"sval":"set_config"'
#: How many shapes an analysis keeps, and how long each may be: bounded memory.
_SHAPES, _SHAPE_CHARS = 4096, 8192


class Analysis:
    """The :func:`statement` of each statement of a script, from the split's trees.

    Statements of one shape (equal trees but for constants and places: a seed file's
    INSERTs) are analysed once: a script's analysis costs a dictionary lookup per
    statement where its statements repeat. Called with each statement's JSON tree
    (see :func:`heal.script.split`); a tree it cannot read stops it, and
    :func:`heal.catalog.predict` raises that.
    """

    def __init__(self, sql: str, pglast: ModuleType) -> None:
        self.sql = sql
        self.pglast = pglast
        self.statements: list[Statement] = []
        #: The number of the statement too deep to look into, if one was.
        self.too_deep: int | None = None
        #: What analysing a statement raised, if anything did.
        self.failed: Exception | None = None
        self._shapes: dict[str, Statement] = {}

    def __call__(self, piece: list[tuple[int, int, str | None]]) -> None:
        """Analyse the statements of a piece of the script, (start, stop, tree) each."""
        if not piece or self.too_deep is not None or self.failed is not None:
            return
        # Every tree's shape in two passes over them all: a pass a tree costs more.
        # A newline is never inside libpg_query's JSON, nor made by the passes.
        shapes = _PLACES.sub("", _CONSTANT.sub(
            _NO_CONSTANT, "\n".join(tree or "" for _, _, tree in piece))).split("\n")  # fmt: skip
        known = self._shapes.get
        for (start, stop, tree), shape in zip(piece, shapes, strict=True):
            if tree is None:
                self.too_deep = len(self.statements) + 1
                return
            if len(tree) > _SHAPE_CHARS or tree.startswith(_READS_MORE) or _SETS_CONFIG in tree:
                self._analyse(tree, start, stop, None)
            else:
                found = known(shape)
                if found is None:
                    self._analyse(tree, start, stop, shape)
                else:
                    self.statements.append(found)
            if self.too_deep is not None or self.failed is not None:
                return

    def _analyse(self, tree_json: str, start: int, stop: int, shape: str | None) -> None:
        """The analysis of one statement whose `shape` (None: not to be shared) has none."""
        try:
            text = self.sql[start:stop] if tree_json.startswith(_READS_TEXT) else None
            found = statement(json.loads(tree_json), self.pglast, text).kept()
        except RecursionError:
            self.too_deep = len(self.statements) + 1
            return
        except Exception as exc:  # a defect of the analysis: the migration goes on without it
            self.failed = exc
            return
        if shape is not None and len(self._shapes) < _SHAPES:
            self._shapes[shape] = found
        self.statements.append(found)


def names(statements: list[Statement], path: list[str] | None = None) -> Names:
    """Everything to look up in the catalogs for these statements (on `path`: the
    schemas an unqualified CREATE may land in, too)."""
    wanted = Names()
    created: dict[str, dict[str, str]] = {}
    for stmt in statements:
        for schema, table, column, am, given in stmt.index_columns:
            known = given or created.get(table, {}).get(column)
            if known:
                wanted.opclass_defaults.add((known, am))
            else:  # its type, and that type's default, once the catalogs say
                wanted.index_columns.add((schema, table, column, am))
        created.update(stmt.columns)
    wanted.path = list(path or ())
    if path and any(stmt.creates_on_path or stmt.search_path for stmt in statements):
        wanted.schemas.update(path)
        for stmt in statements:
            wanted.schemas.update(stmt.search_path or ())
    for stmt in statements:
        wanted.extensions.update(stmt.extensions)
        for ref in (*stmt.refs, *stmt.deferred):
            if ref.schema:
                wanted.schemas.add(ref.schema)
                wanted.qualified.add(ref.name)
            if ref.kind == "access_method":
                wanted.access_methods.add(ref.name)
            if ref.kind == "extension":
                wanted.extensions.add(ref.name)
            bucket = {
                "schema": wanted.schemas, "function": wanted.functions, "type": wanted.types,
                "operator": wanted.operators, "opclass": wanted.opclasses,
                "tablesample": wanted.tablesamples, "tsdictionary": wanted.tsdictionaries,
                "tsconfig": wanted.tsconfigs, "fdw": wanted.fdws,
                "transform": wanted.transforms,
            }.get(ref.kind)  # fmt: skip
            if bucket is not None:
                bucket.add(ref.name)
    return wanted


class Found(dict[int, list[Missing]]):
    """What each statement (by index) will miss; `deferred` are those only a PL/pgSQL
    body names: worth healing where an extension provides them, and nothing to say
    when none does (the function may never be called, or be created later)."""

    def __init__(self) -> None:
        super().__init__()
        self.deferred: set[Missing] = set()
        #: extension -> the schema the script's own CREATE EXTENSION ... SCHEMA names
        self.homes: dict[str, str] = {}
        #: what the script names with a schema: where it expects those objects
        self.qualified: list[Missing] = []


def predict(statements: list[Statement], snapshot: Snapshot, search_path: list[str]) -> Found:
    """What each statement (by index) will miss, each dependency reported once."""
    path: list[str] | None = list(search_path)
    created: set[tuple[str, str]] = set()
    reported: set[Missing] = set()
    found = Found()
    columns: dict[str, dict[str, str]] = {}  # the tables the script creates, so far
    everything: set[tuple[str, str]] = set()  # what the whole script creates
    if any(stmt.deferred for stmt in statements):
        for stmt in statements:
            everything |= stmt.creates
            for ext in stmt.extensions:
                everything |= snapshot.extension_objects.get(ext, set())
    qualified: dict[Missing, None] = {}
    for stmt in statements:
        for ext, schema in stmt.homes.items():
            found.homes.setdefault(ext, schema)
        for ref in (*stmt.refs, *stmt.deferred):
            if ref.schema and ref.kind != "schema":
                qualified[ref] = None
    found.qualified = list(qualified)
    for index, stmt in enumerate(statements):
        if stmt.creates_on_path and path is not None:
            target = _no_schema_to_create_in(path, snapshot, created)
            if target is not None and target not in reported:
                reported.add(target)
                found.setdefault(index, []).append(target)
        for ref in stmt.refs:
            if ref in reported or path is None:
                continue
            if not _exists(ref, snapshot, path, created):
                reported.add(ref)
                found.setdefault(index, []).append(ref)
        for ext in stmt.requiring:
            for req in snapshot.requires.get(ext, ()):
                ref = Missing("extension", req)
                if req not in snapshot.installed and ("extension", req) not in created and (
                        ref not in reported):  # fmt: skip
                    reported.add(ref)
                    found.setdefault(index, []).append(ref)
        for ref in _default_opclasses(stmt, snapshot, columns, created):
            if ref not in reported:
                reported.add(ref)
                found.setdefault(index, []).append(ref)
        columns.update(stmt.columns)
        for ref in stmt.deferred:
            if ref in reported or path is None or ref.kind == "schema":
                continue
            if not _exists(ref, snapshot, path, everything):
                reported.add(ref)
                found.deferred.add(ref)
                found.setdefault(index, []).append(ref)
        created |= stmt.creates
        for ext in stmt.extensions:
            created |= snapshot.extension_objects.get(ext, set())
            created.add(("extension", ext))
        if stmt.path_unknown:
            path = None
        elif stmt.search_path is not None and path is not None:
            path = stmt.search_path
    return found


def _default_opclasses(
    stmt: Statement, snapshot: Snapshot, columns: dict[str, dict[str, str]], created: set
) -> list[Missing]:
    """The default operator classes `stmt`'s index columns need and no one has: a
    plain type's, for an access method core PostgreSQL has none for it in."""
    refs = []
    for schema, table, column, am, given in stmt.index_columns:
        typ = given or columns.get(table, {}).get(column) or snapshot.column_types.get(
            (schema, table, column))  # fmt: skip
        if typ and (typ, am) in snapshot.no_default_opclass and (
                "default_opclass", typ) not in created:  # fmt: skip
            refs.append(Missing("default_opclass", typ, None, (am,)))
    return refs


def _no_schema_to_create_in(path: list[str], snapshot: Snapshot, created: set) -> Missing | None:
    """The schema to create when none on the path exists (PostgreSQL: "no schema has
    been selected to create in"): the first one it names, as pg_dump's
    ``set_config('search_path', 'app', false)`` leaves it."""
    named = [s for s in path if s not in _ALWAYS]
    if not named or any(s in snapshot.schemas or ("schema", s) in created for s in named):
        return None
    return Missing("schema", named[0])


def _visible(schemas: set[str] | list[str], path: list[str]) -> bool:
    return any(s in path or s in _ALWAYS for s in schemas)


def _exists(ref: Missing, snapshot: Snapshot, path: list[str], created: set) -> bool:
    """Whether `ref` resolves: created by the script, or in the catalogs where it looks."""
    if ref.kind == "schema":
        return (
            ref.name in _ALWAYS or ref.name in snapshot.schemas or ("schema", ref.name) in created
        )
    if ref.schema == "pg_temp":
        return True  # the session's own objects: pgheal never makes any there
    if ref.schema and ref.schema not in snapshot.schemas and ("schema", ref.schema) not in created:
        return False  # the schema is missing: reported on its own
    if (ref.kind, ref.name) in created:
        return True
    where: set[str] | list[str] = [ref.schema] if ref.schema else path
    if ref.kind == "function":
        nargs = len(ref.args)
        anyhow = ref.args == ANY_ARGS
        return (
            any(
                (s in where or (not ref.schema and s in _ALWAYS))
                and (anyhow or (low <= nargs and (high is None or nargs <= high)))
                for s, low, high in snapshot.functions.get(ref.name, ())
            )
            or ("procedure", ref.name) in created
        )
    if ref.kind == "access_method":
        return ref.name in CORE_ACCESS_METHODS or ref.name in snapshot.access_methods
    if ref.kind == "fdw":
        return ref.name in snapshot.fdws
    if ref.kind == "extension":
        return ref.name in snapshot.installed
    if ref.kind == "transform":
        return (ref.name, ref.args[0] if ref.args else "") in snapshot.transforms
    table = {
        "type": snapshot.types.get(ref.name, set()),
        "operator": snapshot.operators.get(ref.name, set()),
        "opclass": snapshot.opclasses.get((ref.name, ref.args[0] if ref.args else ""), set()),
        "tablesample": snapshot.tablesamples.get(ref.name, set()),
        "tsdictionary": snapshot.tsdictionaries.get(ref.name, set()),
        "tsconfig": snapshot.tsconfigs.get(ref.name, set()),
    }.get(ref.kind)
    if table is None:
        return True
    return any(s in where for s in table) or (not ref.schema and _visible(table, []))
