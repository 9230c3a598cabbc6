"""The thin layer between pgheal's pure logic and PostgreSQL (``plpy``).

Only this module talks to the server. ``heal.migrate`` runs as the caller;
every change it makes on the caller's behalf goes through ``heal.apply_fix``,
a SECURITY DEFINER function that checks the policy again for that caller.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import plpy

from . import PGLAST_VERSION, __version__, analyze, parser
from .errors import (
    DUPLICATE_OBJECT,
    HEALABLE_SQLSTATES,
    PATTERNS,
    TRANSIENT_SQLSTATES,
    Missing,
    classify,
)
from .extcatalog import install_chain, objects_in, prepare
from .fingerprint import fingerprint
from .planner import Fix, Plan, install_extension, plan
from .policy import (
    Caller,
    Extension,
    Policy,
    SettingError,
    refuse_extension,
    refuse_role,
    refuse_schema,
)
from .script import Script, ScriptError, Statement, split


def _rows(query: str, *args: Any, types: tuple[str, ...] = ()) -> list[dict]:
    if not args:
        return list(plpy.execute(query))
    plan_ = plpy.prepare(query, list(types or ("text",) * len(args)))
    return list(plpy.execute(plan_, list(args)))


def _value(query: str, *args: Any, types: tuple[str, ...] = ()) -> Any:
    rows = _rows(query, *args, types=types)
    return next(iter(rows[0].values())) if rows else None


def settings() -> dict[str, str]:
    return {r["name"]: r["value"] for r in _rows("SELECT name, value FROM heal.settings")}


def load_parser() -> ModuleType:
    module = parser.loaded()
    if module is not None:
        return module
    site = _value("SELECT python_path FROM heal.installation")
    return parser.load(site or None)


def server_info() -> dict[str, Any]:
    """What the installer checks: the server's Python and its pglast."""
    import sys

    info: dict[str, Any] = {
        "heal_version": __version__,
        "python": sys.version.split()[0],
        "pglast_wanted": PGLAST_VERSION,
    }
    try:
        pglast = load_parser()
        info["pglast"] = pglast.__version__.lstrip("v")
        info["pglast_path"] = os.path.dirname(pglast.__file__)
        pglast.split("SELECT 1")
    except parser.ParserUnavailable as exc:
        info["pglast"] = None
        info["error"] = str(exc)
    return info


# -- what the database knows -------------------------------------------------------------


def _search_path_list(value: str) -> list[str]:
    """``"$user", public, "My Schema"`` -> ``['$user', 'public', 'My Schema']``."""
    names = []
    for part in value.split(","):
        part = part.strip()
        if len(part) >= 2 and part[0] == part[-1] == '"':
            part = part[1:-1].replace('""', '"')
        if part:
            names.append(part)
    return names


def database_search_path() -> list[str]:
    """The database's default search_path (``ALTER DATABASE ... SET``), else the server's."""
    value = _value(
        """SELECT substr(s, length('search_path=') + 1)
             FROM pg_catalog.pg_db_role_setting r, unnest(r.setconfig) s
            WHERE r.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                                    WHERE datname = current_database())
              AND r.setrole = 0 AND s LIKE 'search_path=%'"""
    )
    if value is None:
        value = _value("SELECT boot_val FROM pg_catalog.pg_settings WHERE name = 'search_path'")
    return _search_path_list(value or "")


#: Per kind: a query for the schemas holding objects of that name, and whether each
#: fits the call (argument count); its parameters; how to get them from a Missing.
_LOCATE: dict[str, tuple[str, tuple[str, ...]]] = {
    "function": (
        """SELECT n.nspname, $3 BETWEEN p.pronargs - p.pronargdefaults AND p.pronargs
                  OR (p.provariadic <> 0 AND $3 >= p.pronargs - 1) AS fits
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE p.proname = $1 AND p.prokind = ANY($2::"char"[])""",
        ("name", "text[]", "int4"),
    ),
    "type": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_type t
             JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.typname = $1""",
        ("name",),
    ),
    "operator": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_operator o
             JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace WHERE o.oprname = $1""",
        ("name",),
    ),
    "opclass": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_opclass c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.opcnamespace
             JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod
            WHERE c.opcname = $1 AND a.amname = $2""",
        ("name", "name"),
    ),
    "tablesample": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_proc p
             JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
            WHERE p.proname = $1 AND p.prorettype = 'pg_catalog.tsm_handler'::pg_catalog.regtype""",
        ("name",),
    ),
    "tstemplate": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_ts_template t
             JOIN pg_catalog.pg_namespace n ON n.oid = t.tmplnamespace WHERE t.tmplname = $1""",
        ("name",),
    ),
    "tsparser": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_ts_parser t
             JOIN pg_catalog.pg_namespace n ON n.oid = t.prsnamespace WHERE t.prsname = $1""",
        ("name",),
    ),
    "tsdictionary": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_ts_dict t
             JOIN pg_catalog.pg_namespace n ON n.oid = t.dictnamespace WHERE t.dictname = $1""",
        ("name",),
    ),
    "tsconfig": (
        """SELECT n.nspname, true AS fits FROM pg_catalog.pg_ts_config t
             JOIN pg_catalog.pg_namespace n ON n.oid = t.cfgnamespace WHERE t.cfgname = $1""",
        ("name",),
    ),
}


def _locate_params(missing: Missing) -> list[Any]:
    if missing.kind in ("function", "procedure"):
        kinds = ["p"] if missing.kind == "procedure" else ["f", "a", "w"]
        return [missing.name, kinds, len(missing.args)]
    if missing.kind == "opclass":
        return [missing.name, missing.args[0]]
    return [missing.name]


class DatabaseCatalog:
    """:class:`heal.planner.Catalog` answered from the system catalogs."""

    def __init__(self) -> None:
        self._found: dict[Missing, list[dict]] = {}
        self._fresh = False

    def _ensure_fresh(self) -> None:
        """Check the extension catalog once per migration: the check reads every control file."""
        if not self._fresh:
            refresh_extension_catalog()
            self._fresh = True

    def schema_exists(self, name: str) -> bool:
        return bool(_value("SELECT count(*) FROM pg_catalog.pg_namespace WHERE nspname = $1", name))

    def schemas_on_path(self) -> list[str]:
        return list(_value("SELECT current_schemas(true)") or [])

    def database_search_path(self) -> list[str]:
        return database_search_path()

    def _objects(self, missing: Missing) -> list[dict]:
        if missing not in self._found:
            kind = "function" if missing.kind == "procedure" else missing.kind
            if kind not in _LOCATE:
                return []
            query, types = _LOCATE[kind]
            self._found[missing] = _rows(query, *_locate_params(missing), types=types)
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
        types = ["text", "text"]
        if missing.kind in ("function", "procedure"):
            query += " AND $3 >= min_args AND (max_args IS NULL OR $3 <= max_args)"
            args.append(len(missing.args))
            types.append("int4")
        elif missing.kind in ("opclass", "default_opclass"):
            query += " AND args[1] = $3"
            args.append(missing.args[0])
            types.append("text")
        found: dict[str, list[tuple[str, ...]]] = {}
        for row in _rows(query, *args, types=tuple(types)):
            found.setdefault(row["extension"], []).append(tuple(row["args"] or ()))
        return found

    def known(self, missing: Missing) -> list[tuple[str, str]]:
        rows = _rows(
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

    def castable(self, source: str, target: str) -> bool:
        return bool(
            _value(
                """SELECT count(*) FROM pg_catalog.pg_cast
                    WHERE castsource = to_regtype($1) AND casttarget = to_regtype($2)
                      AND castcontext = 'i'""",
                source,
                target,
            )
        )

    def extension(self, name: str) -> Extension | None:
        self._ensure_fresh()
        rows = _rows(
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


def caller(role: str | None = None) -> Caller:
    row = _rows(
        """SELECT r.rolname, r.rolsuper,
                  has_database_privilege(r.oid, current_database(), 'CREATE') AS can_create
             FROM pg_catalog.pg_roles r WHERE r.rolname = coalesce($1, current_user)""",
        role,
        types=("name",),
    )[0]
    return Caller(row["rolname"], row["rolsuper"], row["can_create"])


# -- the extension catalog ---------------------------------------------------------------


def refresh_extension_catalog(force: bool = False) -> int:
    """Rebuild ``heal.extension_objects`` when the available extensions changed.

    Returns the number of objects recorded (0 when nothing had to be done).
    """
    fingerprint = _value(
        """SELECT md5(string_agg(name || ':' || version, ',' ORDER BY name, version))
             FROM pg_catalog.pg_available_extension_versions"""
    )
    current = _value(
        "SELECT fingerprint FROM heal.extension_catalog_builds ORDER BY id DESC LIMIT 1"
    )
    if current == fingerprint and not force:
        return 0
    # Only the installer's role may rebuild; the call runs with its rights.
    return int(_value("SELECT heal.rebuild_extension_catalog($1)", fingerprint))


def rebuild_extension_catalog(fingerprint: str) -> int:
    started = time.monotonic()
    pglast = load_parser()
    sharedir = _value("SELECT setting FROM pg_catalog.pg_config WHERE name = 'SHAREDIR'")
    directory = os.path.join(sharedir, "extension")
    filenames = os.listdir(directory)
    available = _rows("SELECT name, default_version FROM pg_catalog.pg_available_extensions")
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
        ["text", "text", "text", "text[]", "int4", "int4"],
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
    _rows(
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


def session_search_path(value: str | None = None, user: str | None = None) -> list[str]:
    """A search_path (the session's by default) as schema names, ``$user`` resolved."""
    user = user or _value("SELECT current_user")
    if value is None:
        value = _value("SELECT current_setting('search_path')")
    return [user if p == "$user" else p for p in _search_path_list(value or "")]


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
        for r in _rows(query, sorted(new), types=("name[]",)):
            if kind == "functions":
                _BUILTINS.functions.setdefault(r["name"], []).append(
                    ("pg_catalog", r["low"], r["high"])
                )
            elif kind == "opclasses":
                _BUILTINS.opclasses[(r["name"], r["amname"])] = {"pg_catalog"}
            else:
                getattr(_BUILTINS, kind)[r["name"]] = {"pg_catalog"}
    return _BUILTINS


def take_snapshot(wanted: analyze.Names) -> analyze.Snapshot:
    """Fetch, in one query per kind, what the catalogs hold for the script's names.

    Names pg_catalog has are answered from :func:`builtins` unless a statement
    qualifies them with another schema.
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
        qualified=wanted.qualified,
    )  # fmt: skip

    def rows(query: str, names: set[str]) -> list[dict]:
        return _rows(query, sorted(names), types=("name[]",)) if names else []

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
    if wanted.access_methods:
        snap.access_methods = {r["amname"] for r in _rows("SELECT amname FROM pg_catalog.pg_am")}
    if wanted.extensions:
        for r in _rows(
            "SELECT extension, kind, name FROM heal.extension_objects WHERE extension = ANY($1)",
            sorted(wanted.extensions),
            types=("text[]",),
        ):
            snap.extension_objects.setdefault(r["extension"], set()).add((r["kind"], r["name"]))
    return snap


def predict(
    script: Script, pglast: ModuleType, path: list[str] | None = None
) -> dict[int, list[Missing]]:
    """What each statement (by number) will miss, found before anything runs."""
    analysed = [
        analyze.statement(analyze.parse(s.text, pglast)[0], pglast) for s in script.statements
    ]
    path = path if path is not None else session_search_path()
    found = analyze.predict(analysed, take_snapshot(analyze.names(analysed)), path)
    return {script.statements[i].number: refs for i, refs in found.items()}


def plan_script(sql: str | None) -> list[dict]:
    """Body of ``heal.plan(sql)``: one row per problem static analysis finds."""
    if sql is None:
        return []
    pglast = load_parser()
    script = split(sql, pglast, keep_outside=True)
    policy = Policy.from_settings(settings())
    who = caller()
    catalog = DatabaseCatalog()
    lines = {s.number: s.line for s in script.statements}
    rows = []
    for number, refs in sorted(predict(script, pglast).items()):
        for missing in refs:
            planned = plan(missing, catalog, policy, who)
            rows.append(
                {
                    "statement": number,
                    "line": lines[number],
                    "missing": missing.describe(),
                    "fix": ", ".join(f.describe() for f in planned.fixes) or None,
                    "allowed": planned.ok,
                    "reason": planned.refused or planned.reason,
                }
            )
    return rows


# -- applying fixes (SECURITY DEFINER side) ----------------------------------------------


def apply_fix(role: str, kind: str, target: str, schema: str | None) -> str:
    """Apply one fix for `role`, after checking the policy again; return the SQL run."""
    if not _value("SELECT pg_has_role(session_user, $1, 'MEMBER')", role, types=("name",)):
        plpy.error(
            f'heal.apply_fix: session user is not a member of role "{role}"', sqlstate="42501"
        )
    policy = Policy.from_settings(settings())
    who = caller(role)
    fix = Fix(kind, target, schema)
    q = plpy.quote_ident
    if kind == "create_schema":
        if target == policy.extension_schema:
            statements = [fix.sql(q), f"GRANT USAGE ON SCHEMA {q(target)} TO PUBLIC"]
        else:
            _refuse(refuse_schema(target, policy, who))
            statements = [f"{fix.sql(q)} AUTHORIZATION {q(role)}"]
    elif kind == "create_extension":
        ext = DatabaseCatalog().extension(target)
        if ext is None:
            plpy.error(f'extension "{target}" is not available on this server', sqlstate="58P01")
        _refuse(refuse_extension(ext, policy, who))
        statements = [fix.sql(q)]
    elif kind == "create_role":
        _refuse(refuse_role(target, policy))
        statements = [fix.sql(q)]
    elif kind == "persist_search_path":
        _refuse(policy.refuse_kind(kind))
        if not policy.persist_search_path or target != policy.extension_schema:
            _refuse(
                f"only the extension schema ({policy.extension_schema}) is added to the "
                "database's search_path, and only while heal.settings persist_search_path is on"
            )
        path = [p for p in database_search_path() if p != target] + [target]
        database = _value("SELECT current_database()")
        statements = [f"ALTER DATABASE {q(database)} SET search_path = {', '.join(map(q, path))}"]
    else:
        plpy.error(f"heal.apply_fix: unknown fix kind {kind!r}", sqlstate="22023")
    plpy.execute("SELECT pg_catalog.set_config('heal.fixing', 'on', true)")  # for heal.ddl_log
    for statement in statements:
        plpy.execute(statement)
    return ";\n".join(statements)


def _refuse(reason: str | None) -> None:
    if reason:
        plpy.error(f"pgheal policy: {reason}", sqlstate="42501")


# -- heal.migrate --------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class PgError:
    """An error as PostgreSQL reported it, and where in the script it happened."""

    sqlstate: str
    message: str
    detail: str | None = None
    hint: str | None = None
    statement: Statement | None = None
    position: int = 0

    @classmethod
    def from_spi(cls, exc: Exception, stmt: Statement) -> PgError:
        data = getattr(exc, "spidata", None) or (None,) * 10
        return cls(
            sqlstate=getattr(exc, "sqlstate", None) or "XX000",
            message=str(exc.args[0]) if exc.args else str(exc),
            detail=data[1],
            hint=data[2],
            statement=stmt,
            position=data[4] or 0,
        )

    def where(self, script: str) -> str:
        stmt = self.statement
        if stmt is None:
            return ""
        if not self.position:
            return f"statement {stmt.number}, line {stmt.line}"
        offset = stmt.offset + self.position - 1
        line = script.count("\n", 0, offset) + 1
        column = offset - (script.rfind("\n", 0, offset) + 1) + 1
        return f"statement {stmt.number}, line {line}, column {column}"


class MigrationFailed(Exception):
    def __init__(self, error: PgError, note: str | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.note = note


@dataclass
class Run:
    """One call of heal.migrate: what happened, recorded when it ends."""

    sql: str
    name: str | None = None
    dry_run: bool = False
    forced: bool = False
    source: str = "migration"
    retry_of: int | None = None
    #: Whether a failure's record may be committed (not inside a scan's transaction).
    commit: bool = True
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=_now)
    events: list[dict] = field(default_factory=list)
    statements: int = 0
    heals: int = 0
    attempts: int = 0

    def event(self, event_type: str, **fields: Any) -> dict:
        row = {"event_type": event_type, "created_at": _now(), **fields}
        self.events.append(row)
        return row

    @property
    def checksum(self) -> str:
        return hashlib.md5(self.sql.encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {"heals": self.heals, "statements": self.statements, "name": self.name}

    def elapsed_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 3)

    def record(self, status: str, error: str | None = None, sqlstate: str | None = None) -> int:
        migration = {
            "sql": self.sql,
            "sqlstate": sqlstate,
            "retry_of": self.retry_of,
            "checksum": self.checksum,
            "name": self.name,
            "forced": self.forced,
            "status": status,
            "started_at": self.started_at,
            "statements": self.statements,
            "attempts": self.attempts,
            "heals": self.heals,
            "error": error,
            "duration_ms": self.elapsed_ms(),
            "source": self.source,
            "run_by": _value("SELECT current_user"),
        }
        return int(
            _value(
                "SELECT heal.record_migration($1::jsonb, $2::jsonb)",
                json.dumps(migration),
                json.dumps(self.events),
            )
        )


def _failure(sqlstate: str, message: str, detail: str, hint: str) -> dict[str, str]:
    """What heal.migrate raises: PL/pgSQL raises it, so the message keeps no Python prefix."""
    return {"sqlstate": sqlstate, "message": message, "detail": detail, "hint": hint}


ROLLED_BACK_HINT = "The migration was rolled back; heal.build_events has each step."


class _DryRun(Exception):
    """Raised to roll back a dry run once everything has run."""


def migrate(
    sql: str | None,
    name: str | None = None,
    dry_run: bool = False,
    force: bool = False,
    *,
    source: str = "migration",
    retry_of: int | None = None,
) -> dict[str, str] | None:
    """Body of ``CALL heal.migrate(...)``: run, heal, record; return the error to raise.

    The scan calls it too (`source` ``scan``, `retry_of` the failed run it retries).
    """
    if sql is None:
        return _failure(
            "22004",
            "heal.migrate: sql must not be NULL",
            "Nothing was run.",
            "Pass the migration script as text: CALL heal.migrate($$ ... $$)",
        )
    if name is not None and not name.strip():
        return _failure(
            "22023", "heal.migrate: name must not be empty", "Nothing was run.",
            "Name the migration, e.g. name => '0001_init', or leave name out.",
        )  # fmt: skip
    try:
        policy = Policy.from_settings(settings())
    except SettingError as exc:
        return _failure("22023", str(exc), "Nothing was run.", "Fix the value in heal.settings.")
    run = Run(
        sql, name=name, dry_run=dry_run, forced=force, source=source, retry_of=retry_of,
        commit=source != "scan",
    )  # fmt: skip
    _value("SELECT pg_catalog.set_config('heal.migrating', 'on', true)")
    try:
        return _migrate(run, policy)
    finally:
        _value("SELECT pg_catalog.set_config('heal.migrating', 'off', true)")


def _migrate(run: Run, policy: Policy) -> dict[str, str] | None:
    sql, name, dry_run = run.sql, run.name, run.dry_run
    if name is not None:
        held = _history_check(run, policy)
        if held is not None:
            return held if held else None
    run.event("migration_started", detail={"bytes": len(sql.encode()), "name": name})
    try:
        pglast = load_parser()
        script = split(sql, pglast)
    except ScriptError as exc:
        run.event("migration_failed", sqlstate=exc.sqlstate, message=exc.message)
        _finish_failed(run, exc.message, exc.sqlstate)
        return _failure(exc.sqlstate, exc.message, "Nothing was run.", exc.hint or "")
    except parser.ParserUnavailable as exc:
        return _failure("58P01", f"heal.migrate: {exc}", "Nothing was run.", "See pgheal install.")
    for notice in script.notices:
        plpy.notice(f"heal.migrate: {notice}")
    if not script.statements:
        plpy.notice("heal.migrate: the script has no statements; nothing was run")
        return None
    run.statements = len(script.statements)
    predicted: dict[int, list[Missing]] = {}
    if policy.predict:
        try:
            predicted = predict(script, pglast)
        except Exception as exc:  # analysis must never stop a migration
            plpy.notice(f"heal.migrate: static analysis skipped ({exc}); healing reactively")
    healer = Healer(run, policy, caller())
    try:
        with plpy.subtransaction():
            for stmt in script.statements:
                healer.execute(stmt, predicted.get(stmt.number, ()))
            if dry_run:
                raise _DryRun
    except _DryRun:
        run.event("migration_succeeded", duration_ms=run.elapsed_ms(), detail=run.summary())
        run.record("dry_run")
        plpy.notice(
            f"heal.migrate: dry run: {run.statements} statements ran, {run.heals} healed; "
            "everything was rolled back"
        )
        return None
    except MigrationFailed as failed:
        err = failed.error
        where = err.where(sql)
        run.event(
            "migration_failed",
            statement=err.statement.number if err.statement else None,
            sqlstate=err.sqlstate,
            message=err.message,
            detail={"where": where, "note": failed.note},
        )
        _finish_failed(run, err.message, err.sqlstate)
        detail = "\n".join(
            part
            for part in (
                err.detail,
                f"heal.migrate: failed at {where}; the migration was rolled back.",
                f"heal.migrate: {failed.note}" if failed.note else None,
            )
            if part
        )
        return _failure(err.sqlstate, err.message, detail, err.hint or ROLLED_BACK_HINT)
    run.event("migration_succeeded", duration_ms=run.elapsed_ms(), detail=run.summary())
    run.record("succeeded")
    if run.heals:
        plpy.notice(
            f"heal.migrate: {run.statements} statements run, {run.heals} healed "
            f"in {run.elapsed_ms():.0f} ms"
        )
    return None


def _history_check(run: Run, policy: Policy) -> dict[str, str] | bool | None:
    """Serialize runners of the same name, then compare with what was applied.

    Returns None to go on, False when there is nothing to do, or the error to raise.
    """
    deadline = time.monotonic() + policy.lock_timeout_ms / 1000
    while not _value(
        "SELECT pg_catalog.pg_try_advisory_xact_lock(hashtext('heal.migrate'), hashtext($1))",
        run.name,
    ):
        if time.monotonic() >= deadline:
            return _failure(
                "55P03",
                f'heal.migrate: migration "{run.name}" is being run by another session',
                f"Waited {policy.lock_timeout_ms} ms (heal.settings lock_timeout_ms).",
                "Wait for the other runner to finish, then run it again.",
            )
        _value("SELECT pg_catalog.pg_sleep(0.05)")
    rows = _rows(
        """SELECT checksum, finished_at::text AS finished_at FROM heal.migrations
            WHERE name = $1 AND status = 'succeeded' ORDER BY id DESC LIMIT 1""",
        run.name,
    )
    if not rows:
        return None
    applied = rows[0]
    if applied["checksum"] == run.checksum:
        plpy.notice(
            f'heal.migrate: migration "{run.name}" was applied at {applied["finished_at"]}; '
            "nothing to do"
        )
        return False
    if run.forced:
        plpy.notice(
            f'heal.migrate: migration "{run.name}" changed since it was applied; '
            "running it again because force => true"
        )
        return None
    return _failure(
        "P0001",
        f'heal.migrate: migration "{run.name}" was applied with another checksum',
        f"Applied: {applied['checksum']} at {applied['finished_at']}; this script: {run.checksum}.",
        "A migration that ran should not change: add a new migration instead, or pass "
        "force => true to run this one again.",
    )


def _finish_failed(run: Run, error: str, sqlstate: str | None) -> None:
    """Record the failure; make the record durable when the CALL may commit."""
    run.record("failed", error, sqlstate)
    if run.commit:
        with contextlib.suppress(plpy.SPIError):
            plpy.commit()  # fails inside a transaction block: the caller's transaction decides


_POLICY_EXISTS = re.compile(r'^policy "(?P<name>.+)" for table "(?P<table>.+)" already exists$')


class Healer:
    """Runs statements one by one, healing the errors that have a fix."""

    def __init__(self, run: Run, policy: Policy, who: Caller) -> None:
        self.run = run
        self.policy = policy
        self.caller = who
        self.catalog = DatabaseCatalog()

    def run_statement(self, stmt: Statement) -> PgError | None:
        try:
            with plpy.subtransaction():
                plpy.execute(stmt.text)
        except plpy.SPIError as exc:
            return PgError.from_spi(exc, stmt)
        return None

    def execute(self, stmt: Statement, predicted: Iterable[Missing] = ()) -> None:
        """Run `stmt`, healing and retrying until it passes or cannot be healed.

        `predicted` are dependencies static analysis found missing: they are fixed
        before the statement runs, so it needs no failed attempt.
        """
        for missing in predicted:
            self.heal_predicted(stmt, missing)
        healed: set[tuple[str, str]] = set()
        tried: list[str] = []
        retries = 0
        pending: dict | None = None  # the last heal, confirmed once the retry gets past it
        pending_key: tuple[str, str] | None = None
        while True:
            error = self.run_statement(stmt)
            key = (error.sqlstate, error.message) if error else None
            if pending is not None and key != pending_key:
                self._succeeded(stmt, pending)
            pending = None
            if error is None:
                return
            if error.sqlstate in TRANSIENT_SQLSTATES:
                pending, pending_key = self.retry_transient(stmt, error, retries), key
                retries += 1
                continue
            if key in healed:
                note = "the error survived its own fix; tried: " + "; ".join(tried)
                self._failed(stmt, error, note)
                raise MigrationFailed(error, note)
            match = _POLICY_EXISTS.match(error.message)
            if error.sqlstate == DUPLICATE_OBJECT and match:
                self.policy_collision(stmt, error)
                return
            missing = classify(error.sqlstate, error.message)
            if error.sqlstate not in HEALABLE_SQLSTATES or missing is None:
                raise MigrationFailed(error)
            if len(healed) >= self.policy.max_attempts:
                note = f"gave up after {len(healed)} fixes (heal.settings max_attempts)"
                self._failed(stmt, error, note, missing)
                raise MigrationFailed(error, note)
            pending, pending_key = self.heal(stmt, missing, error), key
            tried.append(pending["fix_sql"])
            healed.add(key)

    def _succeeded(self, stmt: Statement, fields: dict) -> None:
        self.run.heals += 1
        self.run.event("auto_heal_success", **fields)
        detail = fields["detail"]
        plpy.notice(
            f"heal.migrate: statement {stmt.number} (line {stmt.line}): "
            f"{detail['missing']} -> {detail['fixes']}"
            + (" (predicted)" if detail.get("way") == "predicted" else "")
        )

    def heal(self, stmt: Statement, missing: Missing, error: PgError) -> dict:
        """Plan and apply the fix for one error; return the success event's fields."""
        started = time.monotonic()
        self.run.attempts += 1
        planned = plan(missing, self.catalog, self.policy, self.caller)
        way = "reactive"
        if not planned.fixes and not planned.refused:
            learned = learned_plan(error.sqlstate, error.message)
            if learned is not None:
                planned, way = learned, "learned"
        fields = self._fields(stmt, missing, planned.fixes, way, error)
        self.run.event("auto_heal_attempt", **fields)
        if not planned.ok:
            reason = planned.refused or planned.reason or "no fix is known"
            self._failed(stmt, error, reason, missing)
            raise MigrationFailed(error, reason)
        try:
            applied = [self.apply(fix) for fix in planned.fixes]
        except plpy.SPIError as exc:
            reason = _message(exc)
            self._failed(stmt, error, reason, missing)
            raise MigrationFailed(error, reason) from None
        fields["fix_sql"] = ";\n".join(applied)
        fields["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
        return fields

    def heal_predicted(self, stmt: Statement, missing: Missing) -> None:
        """Fix what analysis found before the statement runs. A prediction that cannot
        be fixed is left alone: the statement then fails, or heals, as it would have."""
        started = time.monotonic()
        planned = plan(missing, self.catalog, self.policy, self.caller)
        if not planned.ok:
            return
        fields = self._fields(stmt, missing, planned.fixes, "predicted", None)
        self.run.attempts += 1
        self.run.event("auto_heal_attempt", **fields)
        try:
            with plpy.subtransaction():
                applied = [self.apply(fix) for fix in planned.fixes]
        except plpy.SPIError as exc:
            self._failed(stmt, None, _message(exc), missing)
            return
        fields["fix_sql"] = ";\n".join(applied)
        fields["duration_ms"] = round((time.monotonic() - started) * 1000, 3)
        self._succeeded(stmt, fields)

    @staticmethod
    def _fields(
        stmt: Statement, missing: Missing, fixes: list[Fix], way: str, error: PgError | None
    ) -> dict:
        return {
            "statement": stmt.number,
            "sqlstate": error.sqlstate if error else PATTERNS[missing.kind][0],
            "message": error.message if error else f"{missing.describe()} is missing",
            "detail": {
                "missing": missing.describe(),
                "pattern": missing.pattern,
                "fixes": ", ".join(f.describe() for f in fixes),
                "way": way,
            },
        }

    def retry_transient(self, stmt: Statement, error: PgError, retries: int) -> dict:
        """Wait and retry a lock timeout, deadlock or serialization failure, with backoff."""
        name = TRANSIENT_SQLSTATES[error.sqlstate]
        refused = self.policy.refuse_kind("retry_transient")
        if refused or retries >= self.policy.max_attempts:
            note = refused or f"still {name} after {retries} retries (heal.settings max_attempts)"
            self._failed(stmt, error, note)
            raise MigrationFailed(error, note)
        delay = self.policy.retry_delay_ms * 2**retries / 1000
        self.run.attempts += 1
        fields = {
            "statement": stmt.number,
            "sqlstate": error.sqlstate,
            "message": error.message,
            "detail": {
                "missing": f"{name} (transient)",
                "fixes": f"retry after {delay:g} s",
                "way": "retry",
                "retry": retries + 1,
            },
        }
        self.run.event("auto_heal_attempt", **fields)
        _value("SELECT pg_catalog.pg_sleep($1)", delay, types=("float8",))
        return {**fields, "duration_ms": delay * 1000}

    def policy_collision(self, stmt: Statement, error: PgError) -> None:
        """CREATE POLICY whose name is taken on that table: skip it when the existing
        policy is the same, otherwise fail showing both definitions."""
        refused = self.policy.refuse_kind("skip_identical_policy")
        if refused:
            raise MigrationFailed(error, refused)
        existing, wanted = compare_policy(stmt.text)
        if existing is None or wanted is None:
            raise MigrationFailed(error)
        if existing != wanted:
            note = (
                "a policy of that name already exists with another definition; "
                f"existing: {_show_policy(existing)}; this migration: {_show_policy(wanted)}"
            )
            self._failed(stmt, error, note)
            raise MigrationFailed(error, note)
        self.run.attempts += 1
        self._succeeded(
            stmt,
            {
                "statement": stmt.number,
                "sqlstate": error.sqlstate,
                "message": error.message,
                "fix_sql": None,
                "detail": {
                    "missing": "policy exists already",
                    "fixes": "skipped the statement: the existing policy is identical",
                    "way": "reactive",
                },
            },
        )

    def _failed(
        self, stmt: Statement, error: PgError | None, reason: str, missing: Missing | None = None
    ) -> None:
        self.run.event(
            "auto_heal_failed",
            statement=stmt.number,
            sqlstate=error.sqlstate if error else None,
            message=error.message if error else None,
            detail={
                "reason": reason,
                "missing": missing.describe() if missing else None,
                "pattern": missing.pattern if missing else None,
            },
        )

    def apply(self, fix: Fix) -> str:
        if fix.kind == "search_path":
            value = extended_path(_value("SELECT current_setting('search_path')") or "", fix.target)
            _value("SELECT set_config('search_path', $1, true)", value)
            return f"SET LOCAL search_path = {value}"
        return apply_fix_as(self.caller.role, fix)


def apply_fix_as(role: str, fix: Fix) -> str:
    """Apply a fix through heal.apply_fix (SECURITY DEFINER, policy checked for `role`)."""
    return str(
        _value(
            "SELECT heal.apply_fix($1, $2, $3, $4)",
            role,
            fix.kind,
            fix.target,
            fix.schema,
            types=("name", "text", "text", "text"),
        )
    )


def extended_path(current: str, schema: str) -> str:
    """`current` search_path with `schema` appended."""
    return ", ".join(p for p in (current.strip(), plpy.quote_ident(schema)) if p)


def learned_plan(sqlstate: str | None, message: str) -> Plan | None:
    """A fix people taught pgheal for exactly this error, if one is enabled."""
    rows = _rows(
        """SELECT id, fix_kind, fix_target FROM heal.learned_patterns
            WHERE fingerprint = $1 AND enabled ORDER BY confidence DESC, id LIMIT 1""",
        fingerprint(sqlstate, message).id,
    )
    if not rows:
        return None
    _rows("UPDATE heal.learned_patterns SET applied = applied + 1 WHERE id = $1", rows[0]["id"],
          types=("int4",))  # fmt: skip
    kind, target = rows[0]["fix_kind"], rows[0]["fix_target"]
    if kind == "create_extension":
        policy = Policy.from_settings(settings())
        return install_extension(target, DatabaseCatalog(), policy, caller())
    return Plan([Fix(kind, target)])


def _message(exc: Exception) -> str:
    """An SPI error's message without the ``plpy.Error: `` prefix of a nested PL/Python raise."""
    text = str(exc.args[0]) if exc.args else str(exc)
    return re.sub(r"^(?:plpy|spiexceptions)\.\w+: ", "", text)


_POLICY_COLUMNS = """SELECT p.polpermissive AS permissive, p.polcmd AS command,
       ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END
               FROM unnest(p.polroles) r ORDER BY 1) AS roles,
       pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS using,
       pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
  FROM pg_catalog.pg_policy p WHERE p.polrelid = $1::regclass AND p.polname = $2"""


class _Probe(Exception):
    """Raised to roll back the subtransaction that tried a policy out."""


def compare_policy(sql: str) -> tuple[dict | None, dict | None]:
    """The existing policy named by a CREATE POLICY, and what the statement would create."""
    pglast = load_parser()
    from pglast.stream import RawStream

    node = pglast.parser.parse_sql(sql)[0].stmt
    if type(node).__name__ != "CreatePolicyStmt":
        return None, None
    rel = node.table
    table = ".".join(plpy.quote_ident(p) for p in (rel.schemaname, rel.relname) if p)
    rows = _rows(_POLICY_COLUMNS, table, node.policy_name)
    existing = rows[0] if rows else None
    probe = f"pgheal_probe_{os.getpid()}"
    node.policy_name = probe
    wanted = None
    try:
        with plpy.subtransaction():
            plpy.execute(RawStream()(node))
            rows = _rows(_POLICY_COLUMNS, table, probe)
            wanted = rows[0] if rows else None
            raise _Probe
    except _Probe:
        pass
    return existing, wanted


def _show_policy(p: dict) -> str:
    kind = "PERMISSIVE" if p["permissive"] else "RESTRICTIVE"
    command = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}.get(
        p["command"], p["command"]
    )
    parts = [f"AS {kind} FOR {command} TO {', '.join(p['roles'])}"]
    if p["using"]:
        parts.append(f"USING ({p['using']})")
    if p["with_check"]:
        parts.append(f"WITH CHECK ({p['with_check']})")
    return " ".join(parts)
