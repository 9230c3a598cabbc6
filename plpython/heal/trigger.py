"""Predictive healing for DDL from any client: the body of the ddl_command_start trigger.

``heal.predict_ddl()`` (PL/pgSQL: PL/Python cannot be an event trigger) asks
:func:`verdict` first, with the statement text, the role running it and its
search_path: most DDL is of a shape this backend has judged before, and needs
nothing. Otherwise it calls :func:`heal_ddl`, which analyses the statement like
``heal.plan``, applies the fixes the policy allows for that role (the same fix code
as heal.migrate), records them with source ``event_trigger``, and returns the
search_path the statement needs, for the wrapper to set for the rest of the
transaction.
"""

from __future__ import annotations

from collections import OrderedDict
from types import ModuleType

import plpy

from . import analyze, reasons
from .db import caller, cancelled, fetch_value, load_parser, session_search_path, settings
from .errors import PATTERNS, Missing
from .parser import loaded
from .searchpath import appended, relation_lookup, resolved
from .snapshot import builtins, take_snapshot

#: Hashes of (role, search_path, query text) whose needs pg_catalog alone met, per
#: backend (nothing a session can drop or roll back): DDL that repeats costs one lookup.
_MET: OrderedDict[int, None] = OrderedDict()
_MET_SIZE = 2000
#: Signatures (:func:`analyze.signature`) of statements pg_catalog alone satisfies,
#: per backend: most DDL, told apart by its shape after the first of its kind.
_BUILTIN_ONLY: OrderedDict[tuple, None] = OrderedDict()
#: (signature, role) of statements that needed nothing but pg_catalog and the schemas
#: their signature names, per backend: met again while those schemas exist, which the
#: catalog is asked each time (a schema dropped, or rolled back, in any session).
_SCHEMAS_ONLY: OrderedDict[tuple, None] = OrderedDict()


#: What :func:`verdict` finds: the schemas that must exist (quoted), and the table's
#: name, columns and access method of an index whose columns pg_catalog's default
#: operator classes must serve, with the schemas to look for the table in, in order
#: (:func:`lookup_path`), or Nones.
Verdict = tuple[list[str], str | None, list[str] | None, str | None, list[str] | None]
_NOTHING: Verdict = ([], None, None, None, None)


def lookup_path(schema: str | None, search_path: str, role: str) -> list[str]:
    """Where the server looks for a table named in `schema` (None: unqualified) when
    `role` runs DDL on `search_path`: ``$user`` is that role, not pgheal's owner, whose
    rights the wrapper asks with. The wrapper takes the first of these holding the
    table that the role may use, as the server does."""
    return [schema] if schema is not None else relation_lookup(resolved(search_path, role))


def verdict(query: str, role: str, search_path: str) -> Verdict | None:
    """What this backend knows already of what the DDL in `query` needs, asking nothing.

    None: what only the full analysis of :func:`heal_ddl` can say. Else what the
    PL/pgSQL wrapper is to ask the catalog (:data:`Verdict`): nothing is needed if the
    schemas named (quoted as identifiers) exist and, for a GIN, GiST, SP-GiST or BRIN
    index, pg_catalog's default operator classes serve the columns indexed. The wrapper
    asks in SQL, not here: each query a PL/Python function runs is a subtransaction,
    which costs more with every table a migration's transaction has created. It runs
    no SQL, so it runs without a ``SET`` clause (a GUC saved and restored for every
    DDL) and on the session's search_path, which it never reads but as text; every
    verdict it finds, :func:`heal_ddl` made under its own path.
    """
    key = hash((role, search_path, query))
    if key in _MET:
        _MET.move_to_end(key)
        return _NOTHING
    pglast = loaded()
    if pglast is None:
        return None
    tree_json = pglast.parser.parse_sql_json(query)
    shape, on_path, schemas = _shape(tree_json, pglast, role, search_path)
    if shape is None or (on_path and not _PATH_OK.get((role, search_path), False)):
        return None
    found = _known(shape, role, on_path, key)
    if found is None:
        return None
    named = [plpy.quote_ident(schema) for schema in sorted(schemas)] if found else []
    if not analyze.columns_decide(shape):
        return (named, None, None, None, None) if named else _NOTHING
    index = analyze.indexed_columns(tree_json)
    if index is None:
        return None
    schema, table, columns, am = index
    if not columns:
        return (named, None, None, None, None)
    return (named, table, columns, am, lookup_path(schema, search_path, role))


def heal_ddl(query: str, role: str, search_path: str) -> str | None:
    """Fix what the DDL in `query` will miss; return the search_path it needs, if changed."""
    key = hash((role, search_path, query))
    pglast = load_parser()
    tree_json = pglast.parser.parse_sql_json(query)
    try:
        return _analysed(query, role, search_path, tree_json, key, pglast)
    except RecursionError:  # a tree too deep for json.loads: the server judges it alone
        _remember(_MET, key)
        return None


def _shape(
    tree_json: str, pglast: ModuleType, role: str, search_path: str
) -> tuple[tuple | None, bool, set[str]]:
    """The statement's signature as the verdicts are kept by, whether it creates on the
    path, and the schemas it names."""
    shape = analyze.signature(tree_json, pglast)
    on_path = shape is not None and shape[0] in analyze.CREATES_ON_PATH
    if on_path:  # where an unqualified CREATE lands depends on the path: one verdict each
        shape = (shape, role, search_path)
    return shape, on_path, analyze.named_schemas(shape) if shape is not None else set()


def _known(shape: tuple, role: str, on_path: bool, key: int) -> bool | None:
    """False: pg_catalog has all the statement of `shape` needs. True: so it has but
    the schemas the shape names. None: not known. Only a verdict on pg_catalog's names
    alone is kept for the statement's very text (`key`): the schemas it names may be
    dropped or rolled back since, in any session, so the catalog is asked each time."""
    if shape in _BUILTIN_ONLY:
        _BUILTIN_ONLY.move_to_end(shape)
        if not on_path and not analyze.columns_decide(shape):
            _remember(_MET, key)
        return False
    if (shape, role) in _SCHEMAS_ONLY:
        _SCHEMAS_ONLY.move_to_end((shape, role))
        return True
    return None


def _analysed(
    query: str, role: str, search_path: str, tree_json: str, key: int, pglast: ModuleType
) -> str | None:
    shape, on_path, schemas = _shape(tree_json, pglast, role, search_path)
    lands = not on_path or _lands_somewhere(role, search_path)
    # An index whose columns decide is looked into here each time: the wrapper asks of
    # them on the session's path, and this runs on pgheal's.
    decided = shape is not None and analyze.columns_decide(shape)
    known = _known(shape, role, on_path, key) if shape is not None and lands else None
    if not decided and (known is False or (known and _all_exist(schemas))):
        return None
    analysed = [analyze.statement(tree, pglast, text)
                for tree, text in analyze.with_texts(tree_json, query)]  # fmt: skip
    if shape is not None and not schemas and lands and _only_builtins(analysed[0]):
        _remember(_BUILTIN_ONLY, shape)
        if not decided:
            if not on_path:
                _remember(_MET, key)
            return None
    path = session_search_path(search_path, role)
    found = analyze.predict(analysed, take_snapshot(analyze.names(analysed, path), role), path)
    if not found:
        if schemas and lands and _only_schemas(analysed[0]):
            _remember(_SCHEMAS_ONLY, (shape, role))
        return None
    return _heal(found, role, search_path)


def _heal(found: analyze.Found, role: str, search_path: str) -> str | None:
    """Apply what the policy allows for `role`; return the search_path, if changed."""
    # Imported here, not above: most DDL needs nothing, and a connection's first DDL
    # should not pay for the planner and the fix code.
    from .catalog import DatabaseCatalog
    from .fixes import apply_fix_as, fix_error_kind, spi_message
    from .planner import plan
    from .policy import Policy

    policy = Policy.from_settings(settings())
    who = caller(role)
    catalog = DatabaseCatalog(lambda: search_path)
    new_path = search_path
    _refusals["statement"] = 0
    for index, refs in sorted(found.items()):
        number = index + 1
        for missing in refs:
            planned = plan(missing, catalog, policy, who)
            if not planned.ok and planned.why == reasons.NO_FIX:
                # Nothing provides it: the statement fails as it would (its event would
                # go with it), or it does not need it now (a body, check_function_bodies
                # off). Said, never recorded: a role's DDL must not fill pgheal's records.
                if missing not in found.deferred:
                    plpy.notice(f"pgheal: {missing.describe()} not healed: "
                                f"{planned.reason or 'no known fix'}")  # fmt: skip
                continue
            detail = {"missing": missing.describe(), "pattern": missing.pattern,
                      "fixes": ", ".join(f.describe() for f in planned.fixes),
                      "way": "predicted", "role": role}  # fmt: skip
            if not planned.ok:
                # Usually the statement fails next, rolling this event back with it; not
                # always (check_function_bodies = off): a refusal is recorded a bounded
                # number of times per statement and per backend, and said once.
                detail["reason"] = planned.refused or planned.reason
                _refusal(number, missing, detail, planned.why)
                continue
            applied = []
            try:
                with plpy.subtransaction():
                    for fix in planned.fixes:
                        if fix.kind == "search_path":
                            new_path = appended(new_path, fix.target)
                            applied.append(f"SET LOCAL search_path = {new_path}")
                        else:
                            applied.append(apply_fix_as(role, fix))
            except plpy.SPIError as exc:
                if cancelled(exc):
                    raise
                detail["reason"] = spi_message(exc)
                _event("auto_heal_failed", number, missing, None, detail, fix_error_kind(exc))
                continue
            _event("auto_heal_success", number, missing, ";\n".join(applied), detail)
            plpy.notice(f"pgheal: {missing.describe()} -> {detail['fixes']}")
    return new_path if new_path != search_path else None


#: Refusals recorded for one statement, and for one backend, at the most.
_REFUSALS_PER_STATEMENT = 10
_REFUSALS_PER_BACKEND = 200
#: Refusals recorded in this backend: (role, what is missing, reason).
_REFUSED: OrderedDict[tuple, None] = OrderedDict()
_refusals = {"statement": 0, "backend": 0}


def _refusal(number: int, missing: Missing, detail: dict, why: str) -> None:
    """Say and record why `missing` is not healed, unless this backend did already, or it
    has said enough: a role must not fill pgheal's records by running DDL."""
    key = (detail["role"], missing, detail["reason"])
    if key in _REFUSED:
        return
    _remember(_REFUSED, key)
    _refusals["statement"] += 1
    if (_refusals["statement"] > _REFUSALS_PER_STATEMENT
            or _refusals["backend"] >= _REFUSALS_PER_BACKEND):  # fmt: skip
        return
    _refusals["backend"] += 1
    _event("auto_heal_failed", number, missing, None, detail, why)
    plpy.notice(f"pgheal: {missing.describe()} not healed: {detail['reason']}")


#: Whether some schema the path names exists, per (role, search_path), per backend: what
#: an unqualified CREATE needs beyond pg_catalog's names. Kept, as asking costs more than
#: the rest of the verdict: a schema on the path dropped or rolled back since is not
#: seen in this backend (the CREATE then fails as without pgheal).
_PATH_OK: OrderedDict[tuple[str, str], bool] = OrderedDict()


def _lands_somewhere(role: str, search_path: str) -> bool:
    """Whether an unqualified CREATE on this path has a schema to land in."""
    key = (role, search_path)
    if key not in _PATH_OK:
        named = [s for s in session_search_path(search_path, role)
                 if s not in ("pg_catalog", "pg_temp")]  # fmt: skip
        _remember(_PATH_OK, key, bool(named) and bool(fetch_value(
            "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = ANY($1)",
            named, types=("name[]",))))  # fmt: skip
    return _PATH_OK[key]


def _only_builtins(statement: analyze.Statement) -> bool:
    """Whether pg_catalog alone has what `statement` uses: then it does on any search_path."""
    return not analyze.predict([statement], builtins(analyze.names([statement])), [])


def _only_schemas(statement: analyze.Statement) -> bool:
    """Whether pg_catalog has all `statement` uses but schemas: what its signature names."""
    found = analyze.predict([statement], builtins(analyze.names([statement])), [])
    return all(missing.kind == "schema" for refs in found.values() for missing in refs)


def _all_exist(schemas: set[str]) -> bool:
    """Whether every one of `schemas` exists now."""
    return fetch_value(
        "SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = ANY($1)",
        sorted(schemas), types=("name[]",)) == len(schemas)  # fmt: skip


def _remember(cache: OrderedDict, key: object, value: object = None) -> None:
    cache[key] = value
    if len(cache) > _MET_SIZE:
        cache.popitem(last=False)


def _event(
    event_type: str,
    statement: int,
    missing: Missing,
    fix_sql: str | None,
    detail: dict,
    why: str | None = None,
) -> None:
    from . import records
    from .fingerprint import of_missing

    sqlstate = PATTERNS[missing.kind][0]
    fields = {"statement": statement, "sqlstate": sqlstate, "fix_sql": fix_sql,
              "message": f"{missing.describe()} is missing"}  # fmt: skip
    fp = of_missing(sqlstate, missing).id
    if event_type == "auto_heal_failed":
        row = records.failure(detail["reason"], why or reasons.NO_FIX, fp, detail=dict(detail),
                              **fields)  # fmt: skip
    else:
        row = records.event(event_type, fingerprint=fp, detail=detail, **fields)
    records.write_events([row], "event_trigger")
