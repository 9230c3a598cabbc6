"""What the system catalogs hold for the names a script mentions: the
:class:`~heal.analyze.Snapshot` static analysis checks a script against.

Apart from :mod:`heal.catalog`, so that the DDL trigger, which needs only this on
most statements, imports little on a connection's first DDL.
"""

from __future__ import annotations

from . import analyze
from .db import fetch
from .searchpath import relation_lookup

#: What pg_catalog holds for names seen so far in this backend. Most names a statement
#: uses are there, resolve on every search_path and never change: asked for once.
_BUILTINS = analyze.Snapshot()

_ASKED: dict[str, set[str]] = {"functions": set(), "types": set(), "operators": set(),
                               "opclasses": set()}  # fmt: skip


def builtins(wanted: analyze.Names) -> analyze.Snapshot:
    """pg_catalog's entries for the wanted names, fetched for names not asked for before."""
    queries = {
        "functions": """SELECT proname AS name, pronargs - pronargdefaults AS low,
                               CASE WHEN provariadic <> 0 THEN NULL ELSE pronargs END AS high
                          FROM pg_catalog.pg_proc
                         WHERE pronamespace = 'pg_catalog'::regnamespace AND proname = ANY($1)""",
        "types": """SELECT typname AS name FROM pg_catalog.pg_type
                     WHERE typnamespace = 'pg_catalog'::regnamespace AND typname = ANY($1)""",
        "operators": """SELECT DISTINCT oprname AS name FROM pg_catalog.pg_operator
                         WHERE oprnamespace = 'pg_catalog'::regnamespace AND oprname = ANY($1)""",
        "opclasses": """SELECT c.opcname AS name, a.amname FROM pg_catalog.pg_opclass c
                          JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod
                         WHERE c.opcnamespace = 'pg_catalog'::regnamespace
                           AND c.opcname = ANY($1)""",
    }
    for kind, query in queries.items():
        new = getattr(wanted, kind) - _ASKED[kind]
        if not new:
            continue
        _ASKED[kind] |= new
        for r in fetch(query, sorted(new), types=("name[]",)):
            if kind == "functions":
                _BUILTINS.functions.setdefault(r["name"], []).append(
                    ("pg_catalog", r["low"], r["high"])
                )
            elif kind == "opclasses":
                _BUILTINS.opclasses[(r["name"], r["amname"])] = {"pg_catalog"}
            else:
                getattr(_BUILTINS, kind)[r["name"]] = {"pg_catalog"}
    return _BUILTINS


#: Whether plain type ``t`` has no default operator class for access method ``m``: none
#: for it, for a polymorphic type, or for a type it casts to without a function.
_LACKING = """t.typtype = 'b' AND t.typcategory <> 'A' AND NOT EXISTS (
                  SELECT FROM pg_catalog.pg_opclass o
                   WHERE o.opcmethod = m.oid AND o.opcdefault
                     AND (o.opcintype = t.oid
                          OR o.opcintype IN ('pg_catalog.anyelement'::pg_catalog.regtype,
                                             'pg_catalog.anynonarray'::pg_catalog.regtype)
                          OR EXISTS (SELECT FROM pg_catalog.pg_cast k
                                      WHERE k.castsource = t.oid
                                        AND k.casttarget = o.opcintype
                                        AND k.castmethod = 'b' AND k.castcontext = 'i')))"""


def _index_opclasses(snap: analyze.Snapshot, wanted: analyze.Names, role: str | None) -> None:
    """The types of existing tables' index columns (the table the server finds for
    `role`, None the current user: the session's temporary one first, then the first
    schema of the path holding it that the role may use), and which plain types have no
    default operator class for an access method: a column's type and that answer in
    one query. Arrays, domains, enums and ranges are left to the server: polymorphic
    operator classes serve them."""
    answered: set[tuple[str, str]] = set()
    for schema, table, column, am in wanted.index_columns:
        rows = fetch(
            f"""SELECT t.typname, {_LACKING} AS lacking
                  FROM pg_catalog.pg_attribute a
                  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
                  JOIN LATERAL pg_catalog.unnest($3::pg_catalog.text[])
                       WITH ORDINALITY AS p(name, position)
                       ON p.name = n.nspname
                          OR p.name = 'pg_temp' AND n.oid = pg_catalog.pg_my_temp_schema(),
                       pg_catalog.pg_am m
                 WHERE c.relname = $1 AND a.attname = $2 AND NOT a.attisdropped
                   AND m.amname = $4
                   AND (n.oid = pg_catalog.pg_my_temp_schema()
                        OR pg_catalog.has_schema_privilege(coalesce($5, current_user), n.oid,
                                                           'USAGE'))
                 ORDER BY p.position LIMIT 1""",
            table, column, [schema] if schema else relation_lookup(wanted.path), am, role,
            types=("text", "text", "text[]", "name", "name"),
        )  # fmt: skip
        if rows:
            typ = rows[0]["typname"]
            snap.column_types[(schema, table, column)] = typ
            answered.add((typ, am))
            if rows[0]["lacking"]:
                snap.no_default_opclass.add((typ, am))
    for typ, am in wanted.opclass_defaults - answered:
        lacking = fetch(
            f"""SELECT {_LACKING} AS lacking
                  FROM pg_catalog.pg_type t, pg_catalog.pg_am m
                 WHERE t.typname = $1 AND m.amname = $2
                 ORDER BY t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace DESC LIMIT 1""",
            typ, am, types=("name", "name"),
        )  # fmt: skip
        if lacking and lacking[0]["lacking"]:
            snap.no_default_opclass.add((typ, am))


def take_snapshot(wanted: analyze.Names, role: str | None = None) -> analyze.Snapshot:
    """Fetch, in one query per kind, what the catalogs hold for the script's names.

    Names pg_catalog has are answered from :func:`builtins` unless a statement
    qualifies them with another schema. An index's table is the one `role` (None: the
    current user) would find: the DDL trigger judges as pgheal for the role running it.
    """
    snap = analyze.Snapshot()
    known = builtins(wanted)
    for name in wanted.functions & known.functions.keys():
        snap.functions[name] = list(known.functions[name])
    for target, names, have in (
        (snap.types, wanted.types, known.types),
        (snap.operators, wanted.operators, known.operators),
    ):
        for name in names & have.keys():
            target[name] = set(have[name])
    for key, schemas in known.opclasses.items():
        if key[0] in wanted.opclasses:
            snap.opclasses[key] = set(schemas)
    qualified = wanted.qualified
    wanted = analyze.Names(
        schemas=wanted.schemas,
        functions={n for n in wanted.functions if n not in known.functions or n in qualified},
        types={n for n in wanted.types if n not in known.types or n in qualified},
        operators={n for n in wanted.operators if n not in known.operators},
        opclasses={n for n in wanted.opclasses if not any(k[0] == n for k in known.opclasses)
                   or n in qualified},
        tablesamples=wanted.tablesamples,
        extensions=wanted.extensions,
        access_methods=wanted.access_methods - analyze.CORE_ACCESS_METHODS,
        tsdictionaries=wanted.tsdictionaries, tsconfigs=wanted.tsconfigs, fdws=wanted.fdws,
        transforms=wanted.transforms, index_columns=wanted.index_columns,
        opclass_defaults=set(wanted.opclass_defaults), path=wanted.path,
        qualified=wanted.qualified,
    )  # fmt: skip

    def rows(query: str, names: set[str]) -> list[dict]:
        return fetch(query, sorted(names), types=("name[]",)) if names else []

    for r in rows("SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1)",
                  wanted.schemas):  # fmt: skip
        snap.schemas.add(r["nspname"])
    for r in rows(
        """SELECT p.proname, n.nspname, p.pronargs - p.pronargdefaults AS low,
                  CASE WHEN p.provariadic <> 0 THEN NULL ELSE p.pronargs END AS high
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE p.proname = ANY($1)""",
        wanted.functions,
    ):
        if r["nspname"] != "pg_catalog" or r["proname"] not in snap.functions:
            snap.functions.setdefault(r["proname"], []).append((r["nspname"], r["low"], r["high"]))
    simple = [
        (snap.types, wanted.types, "pg_type", "typname", "typnamespace", ""),
        (snap.operators, wanted.operators, "pg_operator", "oprname", "oprnamespace", ""),
        (snap.tablesamples, wanted.tablesamples, "pg_proc", "proname", "pronamespace",
         "AND o.prorettype = 'pg_catalog.tsm_handler'::pg_catalog.regtype"),
        (snap.tsdictionaries, wanted.tsdictionaries, "pg_ts_dict", "dictname", "dictnamespace",
         ""),
        (snap.tsconfigs, wanted.tsconfigs, "pg_ts_config", "cfgname", "cfgnamespace", ""),
    ]  # fmt: skip
    for target, names, table, column, namespace, extra in simple:
        query = (
            f"SELECT o.{column} AS name, n.nspname FROM pg_catalog.{table} o "
            f"JOIN pg_catalog.pg_namespace n ON n.oid = o.{namespace} "
            f"WHERE o.{column} = ANY($1) {extra}"
        )
        for r in rows(query, names):
            target.setdefault(r["name"], set()).add(r["nspname"])
    for r in rows(
        """SELECT c.opcname, a.amname, n.nspname FROM pg_catalog.pg_opclass c
             JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod
             JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace
            WHERE c.opcname = ANY($1)""",
        wanted.opclasses,
    ):
        snap.opclasses.setdefault((r["opcname"], r["amname"]), set()).add(r["nspname"])
    snap.fdws = {r["fdwname"] for r in rows(
        "SELECT fdwname FROM pg_catalog.pg_foreign_data_wrapper WHERE fdwname = ANY($1)",
        wanted.fdws)}  # fmt: skip
    snap.transforms = {(r["typname"], r["lanname"]) for r in rows(
        """SELECT t.typname, l.lanname FROM pg_catalog.pg_transform x
             JOIN pg_catalog.pg_type t ON t.oid = x.trftype
             JOIN pg_catalog.pg_language l ON l.oid = x.trflang
            WHERE t.typname = ANY($1)""",
        wanted.transforms)}  # fmt: skip
    _index_opclasses(snap, wanted, role)
    if wanted.access_methods:
        snap.access_methods = {r["amname"] for r in fetch("SELECT amname FROM pg_catalog.pg_am")}
    if wanted.extensions:
        for r in fetch(
            "SELECT extension, kind, name FROM heal.extension_objects WHERE extension = ANY($1)",
            sorted(wanted.extensions),
            types=("text[]",),
        ):
            snap.extension_objects.setdefault(r["extension"], set()).add((r["kind"], r["name"]))
        for r in fetch(
            """SELECT name, requires FROM heal.available_extensions WHERE name = ANY($1)""",
            sorted(wanted.extensions), types=("text[]",),
        ):  # fmt: skip
            snap.requires[r["name"]] = list(r["requires"] or ())
        wanted_too = sorted(set(wanted.extensions).union(*snap.requires.values()))
        snap.installed = {r["extname"] for r in fetch(
            "SELECT extname FROM pg_catalog.pg_extension WHERE extname = ANY($1)",
            wanted_too, types=("name[]",))}  # fmt: skip
    return snap
