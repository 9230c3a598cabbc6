"""What the database holds: the planner's :class:`~heal.planner.Catalog` answered from the
system catalogs, the extension catalog learned from the server's scripts, and static
analysis of scripts against them (``heal.plan``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import plpy

from . import analyze, reasons
from .db import (
    OwnPath,
    caller,
    cancelled,
    database_search_path,
    fetch,
    fetch_value,
    load_parser,
    session_search_path,
    settings,
)
from .errors import ANY_ARGS, Missing
from .extcatalog import install_chain, objects_in, prepare
from .fingerprint import canonical
from .planner import NetworkPattern, consult_network, plan
from .policy import Extension, Policy, SchemaInfo, is_temporary_schema
from .script import Script, ScriptError, split, too_deep
from .snapshot import take_snapshot

#: Per kind: a query for the schemas holding objects of that name, and whether each
#: fits the call (argument count); its parameters; how to get them from a Missing.
_LOCATE: dict[str, tuple[str, tuple[str, ...]]] = {
    "function": (
        """SELECT n.nspname, $3 BETWEEN p.pronargs - p.pronargdefaults AND p.pronargs
                  OR (p.provariadic <> 0 AND $3 >= p.pronargs - 1) OR $3 < 0 AS fits
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE p.proname = $1 AND p.prokind = ANY($2::"char"[])""",
        ("name", "text[]", "int4"),
    ),
    "opclass": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_opclass c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace
             JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod
            WHERE c.opcname = $1 AND a.amname = $2""",
        ("name", "name"),
    ),
    # Only relations that belong to an extension: a user's table of that name in another
    # schema is not the one a statement meant.
    "relation": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = $1 AND EXISTS (
                  SELECT FROM pg_catalog.pg_depend d
                   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                     AND d.objid = c.oid AND d.deptype = 'e')""",
        ("name",),
    ),
    "tablesample": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_proc p
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE p.proname = $1 AND p.prorettype = 'pg_catalog.tsm_handler'::pg_catalog.regtype""",
        ("name",),
    ),
}

#: Kinds found by name alone: (catalog, name column, namespace column).
_BY_NAME = {
    "type": ("pg_type", "typname", "typnamespace"),
    "operator": ("pg_operator", "oprname", "oprnamespace"),
    "tstemplate": ("pg_ts_template", "tmplname", "tmplnamespace"),
    "tsparser": ("pg_ts_parser", "prsname", "prsnamespace"),
    "tsdictionary": ("pg_ts_dict", "dictname", "dictnamespace"),
    "tsconfig": ("pg_ts_config", "cfgname", "cfgnamespace"),
}
_LOCATE.update(
    {
        kind: (
            f"""SELECT n.nspname, true AS fits FROM pg_catalog.{table} o
                  JOIN pg_catalog.pg_namespace n ON n.oid = o.{namespace}
                 WHERE o.{column} = $1""",
            ("name",),
        )
        for kind, (table, column, namespace) in _BY_NAME.items()
    }
)


def _locate_params(missing: Missing) -> list[Any]:
    if missing.kind in ("function", "procedure"):
        kinds = ["p"] if missing.kind == "procedure" else ["f", "a", "w"]
        return [missing.name, kinds, -1 if missing.args == ANY_ARGS else len(missing.args)]
    if missing.kind == "opclass":
        return [missing.name, missing.args[0]]
    return [missing.name]


#: Who owns a schema, and who else can create objects in it (not superusers: they
#: can anyway), for :func:`heal.policy.refuse_untrusted_schema`.
_SCHEMA_INFO = """
SELECT o.rolname AS owner, o.rolsuper AS owner_superuser,
       EXISTS (SELECT FROM pg_catalog.pg_depend d
                WHERE d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                  AND d.objid = n.oid AND d.deptype OPERATOR(pg_catalog.=) 'e') AS of_extension,
       ARRAY(SELECT CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                         ELSE g.rolname::text END
               FROM pg_catalog.aclexplode(coalesce(n.nspacl,
                        pg_catalog.acldefault('n', n.nspowner))) a
               LEFT JOIN pg_catalog.pg_roles g ON g.oid OPERATOR(pg_catalog.=) a.grantee
              WHERE a.privilege_type OPERATOR(pg_catalog.=) 'CREATE'
                AND a.grantee OPERATOR(pg_catalog.<>) n.nspowner
                AND NOT coalesce(g.rolsuper, false)) AS creators,
       ARRAY(SELECT m.rolname::text FROM pg_catalog.pg_roles m
              WHERE m.oid OPERATOR(pg_catalog.<>) o.oid AND m.oid OPERATOR(pg_catalog.<>) n.nspowner
                AND NOT m.rolsuper
                AND pg_catalog.pg_has_role(m.oid, n.nspowner, 'USAGE')) AS members
  FROM pg_catalog.pg_namespace n
  JOIN pg_catalog.pg_database d ON d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()
  -- pg_database_owner (the owner of public) stands for the database's owner.
  JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=)
       CASE WHEN n.nspowner OPERATOR(pg_catalog.=) 'pg_database_owner'::pg_catalog.regrole
            THEN d.datdba ELSE n.nspowner END
 WHERE n.nspname OPERATOR(pg_catalog.=) $1"""


class DatabaseCatalog:
    """:class:`heal.planner.Catalog` answered from the system catalogs."""

    def __init__(self, path: Callable[[], str] | None = None) -> None:
        """`path` gives the search_path of the session being healed, when pgheal's own
        queries run on another (:class:`heal.db.OwnPath`)."""
        self._path = path
        self._found: dict[Missing, list[dict]] = {}
        self._schemas: dict[str, SchemaInfo | None] = {}
        self._fresh = False
        #: What the script being healed says of schemas: see :meth:`expect`.
        self._homes: dict[str, str] = {}
        self._qualified: list[Missing] = []

    def expect(self, found: analyze.Found) -> None:
        """Take from a script's analysis where it expects extensions: the schemas its
        own CREATE EXTENSION ... SCHEMA names, and those it qualifies their objects with."""
        self._homes = dict(found.homes)
        self._qualified = list(found.qualified)

    def home(self, extension: str) -> str | None:
        if extension in self._homes:
            return self._homes[extension]
        for ref in self._qualified:
            if extension in self.providers(Missing(ref.kind, ref.name, None, ref.args)):
                return ref.schema
        return None

    def _ensure_fresh(self) -> None:
        """Check the extension catalog once per migration: the check reads every control file."""
        if not self._fresh:
            if _catalog_fingerprint() != fetch_value(_BUILT_FINGERPRINT):
                # Rebuilt as pgheal (SECURITY DEFINER), whoever runs the migration.
                fetch_value("SELECT heal.refresh_extension_catalog()")
            self._fresh = True

    def schema_exists(self, name: str) -> bool:
        return bool(
            fetch_value("SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = $1", name)
        )

    def schemas_on_path(self) -> list[str]:
        if self._path is None:
            return list(fetch_value("SELECT pg_catalog.current_schemas(true)") or [])
        # What current_schemas(true) would say on the session's path: the schemas that
        # exist and the current user may use, in order.
        names = ["pg_catalog", *session_search_path(self._path())]
        return list(
            fetch_value(
                """SELECT coalesce(pg_catalog.array_agg(u.name ORDER BY u.n), '{}')
                     FROM pg_catalog.unnest($1::pg_catalog.text[]) WITH ORDINALITY AS u(name, n)
                     JOIN pg_catalog.pg_namespace s ON s.nspname OPERATOR(pg_catalog.=) u.name
                    WHERE pg_catalog.has_schema_privilege(s.oid, 'USAGE')""",
                names,
                types=("text[]",),
            )
            or []
        )

    def database_search_path(self) -> list[str]:
        return database_search_path()

    def _objects(self, missing: Missing) -> list[dict]:
        if missing not in self._found:
            kind = "function" if missing.kind == "procedure" else missing.kind
            if kind not in _LOCATE:
                return []
            query, types = _LOCATE[kind]
            rows = fetch(query, *_locate_params(missing), types=types)
            # Never a session's temporary schema: whoever holds that session fills it.
            self._found[missing] = [r for r in rows if not is_temporary_schema(r["nspname"])]
        return self._found[missing]

    def locate(self, missing: Missing) -> list[str]:
        return sorted({r["nspname"] for r in self._objects(missing) if r["fits"]})

    def name_on_path(self, missing: Missing) -> bool:
        on_path = set(self.schemas_on_path())
        return any(r["nspname"] in on_path for r in self._objects(missing))

    def providers(self, missing: Missing) -> dict[str, list[tuple[str, ...]]]:
        self._ensure_fresh()
        query = "SELECT extension, args FROM heal.extension_objects WHERE kind = $1 AND name = $2"
        args: list[Any] = [missing.kind, missing.name]
        types = ["pg_catalog.text", "pg_catalog.text"]
        if missing.kind in ("function", "procedure") and missing.args != ANY_ARGS:
            query += " AND $3 >= min_args AND (max_args IS NULL OR $3 <= max_args)"
            args.append(len(missing.args))
            types.append("int4")
        elif missing.kind in ("opclass", "default_opclass", "transform"):
            query += " AND args[1] = $3"
            args.append(missing.args[0])
            types.append("text")
        found: dict[str, list[tuple[str, ...]]] = {}
        for row in fetch(query, *args, types=tuple(types)):
            found.setdefault(row["extension"], []).append(tuple(row["args"] or ()))
        return found

    def known(self, missing: Missing) -> list[tuple[str, str]]:
        rows = fetch(
            """SELECT extension, replace(package, '{major}',
                      (current_setting('server_version_num')::int / 10000)::text) AS package
                 FROM heal.known_extensions
                WHERE kind = $1 AND name = lower($2)
                  AND extension NOT IN (SELECT name FROM pg_catalog.pg_available_extensions)
                ORDER BY extension""",
            missing.kind,
            missing.name,
        )
        return [(r["extension"], r["package"]) for r in rows]

    def network(self, missing: Missing) -> list[NetworkPattern]:
        # Rows other databases wrote: only names that look like an extension's and an OS
        # package's are told (they end up in messages), and compared, never run.
        rows = fetch(
            """SELECT kind, extension, members, applied, held,
                      replace(os_package, '{major}',
                              (current_setting('server_version_num')::int / 10000)::text)
                          AS package
                 FROM heal.network_patterns
                WHERE object_kind = $1 AND object = CASE kind WHEN 'fix' THEN $2 ELSE $3 END
                  AND extension ~ '^[A-Za-z0-9_.-]{1,63}$'
                  AND (os_package IS NULL OR os_package ~ '^[a-z0-9{}][a-z0-9+.{}-]{0,99}$')
                ORDER BY kind = 'fix' DESC, confidence DESC, members DESC, extension""",
            missing.kind,
            canonical(missing).describe(),
            missing.name,
        )
        return [NetworkPattern(r["kind"], r["extension"], r["members"], r["applied"],
                               r["held"], r["package"]) for r in rows]  # fmt: skip

    def castable(self, source: str, target: str) -> bool:
        # The type names come from an error message, which any role can make up
        # (RAISE): to_regtype raises on one that does not parse, and that must not
        # stop pgheal; it is no type, so nothing casts to it.
        try:
            return bool(
                fetch_value(
                    """SELECT count(*) FROM pg_catalog.pg_cast
                        WHERE castsource = pg_catalog.to_regtype($1)
                          AND casttarget = pg_catalog.to_regtype($2) AND castcontext = 'i'""",
                    source,
                    target,
                )
            )
        except plpy.SPIError as exc:
            if cancelled(exc):
                raise
            return False

    def schema_info(self, name: str) -> SchemaInfo | None:
        if name not in self._schemas:
            rows = fetch(_SCHEMA_INFO, name, types=("name",))
            self._schemas[name] = None
            if rows:
                r = rows[0]
                self._schemas[name] = SchemaInfo(
                    name=name,
                    owner=r["owner"],
                    owner_superuser=r["owner_superuser"],
                    of_extension=r["of_extension"],
                    creators=tuple(r["creators"] or ()),
                    members=tuple(r["members"] or ()),
                )
        return self._schemas[name]

    def extension(self, name: str) -> Extension | None:
        self._ensure_fresh()
        rows = fetch(
            """SELECT a.name, a.version, a.trusted, a.superuser, a.relocatable, a.schema,
                      a.requires, n.nspname AS installed_schema, a.comment
                 FROM heal.available_extensions a
                 LEFT JOIN pg_catalog.pg_extension e ON e.extname = a.name
                 LEFT JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
                WHERE a.name = $1""",
            name,
        )
        if not rows:
            return None
        r = rows[0]
        return Extension(
            name=r["name"],
            version=r["version"],
            trusted=r["trusted"],
            superuser=r["superuser"],
            relocatable=r["relocatable"],
            schema=r["schema"],
            requires=tuple(r["requires"] or ()),
            installed_schema=r["installed_schema"],
            comment=r["comment"],
        )


_BUILT_FINGERPRINT = (
    "SELECT fingerprint FROM heal.extension_catalog_builds ORDER BY id DESC LIMIT 1"
)


def _catalog_fingerprint() -> str:
    """What the server's available extensions are, as one value."""
    return fetch_value(
        """SELECT pg_catalog.md5(pg_catalog.string_agg(name || ':' || version, ','
                                                       ORDER BY name, version))
             FROM pg_catalog.pg_available_extension_versions"""
    )


def refresh_extension_catalog(force: bool = False) -> int:
    """Body of ``heal.refresh_extension_catalog`` (SECURITY DEFINER): rebuild
    ``heal.extension_objects`` when the available extensions changed.

    Returns the number of objects recorded (0 when nothing had to be done).
    """
    fingerprint = _catalog_fingerprint()
    if fetch_value(_BUILT_FINGERPRINT) == fingerprint and not force:
        return 0
    return rebuild_extension_catalog(fingerprint)


def rebuild_extension_catalog(fingerprint: str) -> int:
    started = time.monotonic()
    pglast = load_parser()
    sharedir = fetch_value("SELECT setting FROM pg_catalog.pg_config WHERE name = 'SHAREDIR'")
    directory = os.path.join(sharedir, "extension")
    filenames = os.listdir(directory)
    available = fetch("SELECT name, default_version FROM pg_catalog.pg_available_extensions")
    plpy.execute("DELETE FROM heal.extension_objects")
    plpy.execute("DELETE FROM heal.available_extensions")
    plpy.execute(
        """INSERT INTO heal.available_extensions
                  (name, version, trusted, superuser, relocatable, schema, requires, comment)
           SELECT v.name, v.version, v.trusted, v.superuser, v.relocatable, v.schema,
                  coalesce(v.requires::text[], '{}'), a.comment
             FROM pg_catalog.pg_available_extensions a
             JOIN pg_catalog.pg_available_extension_versions v
               ON v.name = a.name AND v.version = a.default_version"""
    )
    insert = plpy.prepare(
        """INSERT INTO heal.extension_objects (extension, kind, name, args, min_args, max_args)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING""",
        [
            "pg_catalog.text",
            "pg_catalog.text",
            "pg_catalog.text",
            "pg_catalog.text[]",
            "pg_catalog.int4",
            "pg_catalog.int4",
        ],
    )
    count, problems = 0, []
    for ext in available:
        for script in install_chain(ext["name"], ext["default_version"], filenames):
            with open(os.path.join(directory, script), encoding="utf-8") as f:
                text = prepare(f.read())
            try:
                objects = list(objects_in(text, pglast))
            except pglast.parser.ParseError as exc:
                problems.append(f"{script}: {exc}")
                continue
            for o in objects:
                plpy.execute(
                    insert, [ext["name"], o.kind, o.name, list(o.args), o.min_args, o.max_args]
                )
                count += 1
    fetch(
        """INSERT INTO heal.extension_catalog_builds
                  (fingerprint, extensions, objects, duration_ms, problems)
           VALUES ($1, $2, $3, $4, $5)""",
        fingerprint,
        len(available),
        count,
        round((time.monotonic() - started) * 1000, 1),
        problems,
        types=("text", "int4", "int4", "float8", "text[]"),
    )
    return count


# -- static analysis -----------------------------------------------------------------------


def predict(
    script: Script, analysis: analyze.Analysis, path: list[str] | None = None
) -> analyze.Found:
    """What each statement (by number) will miss, found before anything runs.

    `analysis` is what :func:`heal.script.split` gave the trees of the statements to.
    """
    if analysis.too_deep is not None:  # a body nested too deeply to look into
        raise too_deep(script.statements.numbered(analysis.too_deep))
    if analysis.failed is not None:
        raise analysis.failed
    dropped = script.statements.dropped
    analysed = [a for number, a in enumerate(analysis.statements, 1) if number not in dropped]
    path = path if path is not None else session_search_path()
    found = analyze.predict(analysed, take_snapshot(analyze.names(analysed, path)), path)
    numbered = analyze.Found()
    numbered.update({script.statements[i].number: refs for i, refs in found.items()})
    numbered.deferred, numbered.homes, numbered.qualified = (
        found.deferred, found.homes, found.qualified)  # fmt: skip
    return numbered


def plan_script(sql: str | None) -> list[dict]:
    """Body of ``heal.plan(sql)``: one row per problem static analysis finds."""
    if sql is None:
        return []
    with OwnPath() as own:
        return _plan_script(sql, own.saved)


def _plan_script(sql: str, path: str) -> list[dict]:
    """:func:`plan_script` on pgheal's own search_path; `path` is the session's."""
    pglast = load_parser()
    analysis = analyze.Analysis(sql, pglast)
    try:
        script = split(sql, pglast, keep_outside=True, each=analysis)
        found = predict(script, analysis, session_search_path(path))
    except ScriptError as exc:  # PostgreSQL's way of saying it, not a Python traceback
        plpy.error(f"heal.plan: {exc.message}", hint=exc.hint, sqlstate=exc.sqlstate)
    policy = Policy.from_settings(settings())
    who = caller()
    catalog = DatabaseCatalog(lambda: path)
    catalog.expect(found)
    where = {number: start for number, start, _ in script.statements.bounds() if number in found}
    rows = []
    for number, refs in sorted(found.items()):
        for missing in refs:
            planned = consult_network(plan(missing, catalog, policy, who), missing, catalog,
                                      policy, who)  # fmt: skip
            if not planned.ok and missing in found.deferred and planned.why == reasons.NO_FIX:
                continue  # only a PL/pgSQL body names it, and nothing provides it
            rows.append(
                {
                    "statement": number,
                    "line": script.statements.lines.at(where[number])[0],
                    "missing": missing.describe(),
                    "fix": ", ".join(f.describe() for f in planned.fixes) or None,
                    "allowed": planned.ok,
                    "reason": planned.refused or planned.reason,
                }
            )
    return rows


def extension_owns(missing: Missing, extension: str) -> bool:
    """Whether an object of that kind and name now belongs to `extension`."""
    catalogs = {"function": "pg_proc", "procedure": "pg_proc", "type": "pg_type",
                "operator": "pg_operator", "opclass": "pg_opclass"}  # fmt: skip
    names = {"pg_proc": "proname", "pg_type": "typname", "pg_operator": "oprname",
             "pg_opclass": "opcname"}  # fmt: skip
    table = catalogs.get(missing.kind)
    if table is None:
        return False
    return bool(
        fetch_value(
            f"""SELECT count(*) FROM pg_catalog.pg_depend d
                  JOIN pg_catalog.{table} o ON o.oid = d.objid
                  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
                 WHERE d.classid = 'pg_catalog.{table}'::regclass AND d.deptype = 'e'
                   AND o.{names[table]} = $1 AND e.extname = $2""",
            missing.name,
            extension,
        )
    )


# -- applying fixes (SECURITY DEFINER side) ----------------------------------------------
