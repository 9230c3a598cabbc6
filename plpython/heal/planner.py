"""Decide how to heal a missing dependency.

The planner asks a :class:`Catalog` (the database, or a fake in unit tests) where
things are and returns a :class:`Plan`: the fixes to apply in order, or the reason
there is none. It never runs anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from . import reasons
from .errors import ANY_ARGS, Missing
from .policy import (
    Caller,
    Extension,
    Policy,
    SchemaInfo,
    refuse_extension,
    refuse_role,
    refuse_schema,
    refuse_untrusted_schema,
)
from .typenames import POLYMORPHIC, normalize_type

#: Kinds of object that live in a schema, so can be found by putting it on the path.
SCHEMA_OBJECTS = frozenset(
    {"function", "procedure", "type", "operator", "opclass", "tablesample", "tstemplate",
     "tsparser", "tsdictionary", "tsconfig", "relation"}
)  # fmt: skip


@dataclass(frozen=True)
class Fix:
    """One change. Kinds: ``create_schema``, ``create_extension``, ``create_role``,
    ``search_path`` (for the rest of the migration), ``persist_search_path`` (the
    database's default)."""

    kind: str
    target: str
    schema: str | None = None

    def sql(self, quote: Callable[[str], str]) -> str:
        """The DDL of a ``create_*`` fix, every name quoted by `quote` (``plpy.quote_ident``).

        Search-path fixes depend on the session and are rendered where they run.
        """
        if self.kind == "create_schema":
            return f"CREATE SCHEMA IF NOT EXISTS {quote(self.target)}"
        if self.kind == "create_extension":
            where = f" WITH SCHEMA {quote(self.schema)}" if self.schema else ""
            return f"CREATE EXTENSION IF NOT EXISTS {quote(self.target)}{where}"
        if self.kind == "create_role":
            return f"CREATE ROLE {quote(self.target)} NOLOGIN"
        raise ValueError(f"fix kind {self.kind!r} has no fixed SQL")

    def describe(self) -> str:
        return {
            "create_schema": f"create schema {self.target}",
            "create_extension": f"install extension {self.target}"
            + (f" in schema {self.schema}" if self.schema else ""),
            "create_role": f"create role {self.target} (NOLOGIN)",
            "search_path": f"put schema {self.target} on the search path",
            "persist_search_path": f"add schema {self.target} to the database's search_path",
        }[self.kind]


@dataclass
class Plan:
    fixes: list[Fix] = field(default_factory=list)
    refused: str | None = None
    reason: str | None = None
    #: The heal.learned_patterns row this plan comes from, if it was learned.
    learned: int | None = None
    #: What kind of reason `reason` is (:mod:`heal.reasons`), when it is not NO_FIX.
    kind: str | None = None
    #: The network pattern this plan applies (:meth:`NetworkPattern.summary`), if any.
    network: dict | None = None

    @property
    def ok(self) -> bool:
        return bool(self.fixes) and self.refused is None

    @property
    def why(self) -> str:
        """The kind of reason this plan does not heal: refused, else its own, else none known."""
        return reasons.REFUSED if self.refused else self.kind or reasons.NO_FIX


@dataclass(frozen=True)
class NetworkPattern:
    """A row of ``heal.network_patterns`` about one missing object.

    Kind ``fix``: members fixed this very error by installing `extension`; kind
    ``provides``: members have `extension` installed, and it provides the object.
    """

    kind: str
    extension: str
    members: int
    applied: int = 0
    held: int = 0
    #: The OS package of the extension on members' hosts, for this server's major version.
    package: str | None = None

    def describe(self) -> str:
        where = f"{self.members} member{'s' if self.members != 1 else ''}"
        if self.kind == "fix":
            return (f"install extension {self.extension} (fixed it on {where}; "
                    f"held {self.held} of {self.applied} times)")  # fmt: skip
        return f"install extension {self.extension} (installed on {where})"

    def summary(self) -> dict:
        return {"kind": self.kind, "extension": self.extension, "members": self.members,
                "applied": self.applied, "held": self.held}  # fmt: skip


class Catalog(Protocol):
    """What the planner needs to know about the database."""

    def schema_exists(self, name: str) -> bool: ...

    def schemas_on_path(self) -> list[str]: ...

    def database_search_path(self) -> list[str]: ...

    def locate(self, missing: Missing) -> list[str]:
        """Schemas where an object matching `missing` exists."""
        ...

    def name_on_path(self, missing: Missing) -> bool:
        """Whether something of that kind and name (any arguments) is visible already."""
        ...

    def providers(self, missing: Missing) -> dict[str, list[tuple[str, ...]]]:
        """Available extensions whose scripts create such an object, with the
        argument types of each candidate object."""
        ...

    def known(self, missing: Missing) -> list[tuple[str, str]]:
        """(extension, OS package) of well-known extensions this server does not have."""
        ...

    def castable(self, source: str, target: str) -> bool:
        """Whether a value of type `source` is implicitly cast to `target`."""
        ...

    def extension(self, name: str) -> Extension | None: ...

    def network(self, missing: Missing) -> list[NetworkPattern]:
        """What the learning network knows of `missing`: fixes first, best first."""
        ...

    def schema_info(self, name: str) -> SchemaInfo | None:
        """Who owns schema `name` and who else can create in it; None if it does not exist."""
        ...

    def home(self, extension: str) -> str | None:
        """The schema the script being healed expects `extension` in, if it says."""
        ...


def plan(missing: Missing, catalog: Catalog, policy: Policy, caller: Caller) -> Plan:
    """The fixes for `missing`, checked against `policy` for `caller`."""
    if missing.kind == "schema":
        if missing.name.startswith("pg_"):
            # pg_temp (and pg_toast, pg_catalog) always exist; other pg_ names are reserved.
            return Plan(reason=f'schema "{missing.name}" is a system schema: pgheal never '
                        "creates it")  # fmt: skip
        return Plan(
            [Fix("create_schema", missing.name)], refuse_schema(missing.name, policy, caller)
        )
    if missing.kind == "role":
        return Plan([Fix("create_role", missing.name)], refuse_role(missing.name, policy))
    if missing.kind == "extension":  # what a CREATE EXTENSION requires, as CASCADE would
        return install_extension(missing.name, catalog, policy, caller)
    if missing.schema is not None and missing.schema.startswith("pg_"):
        return Plan(reason=f"{missing.describe()} is named in system schema {missing.schema}: "
                    "pgheal installs nothing there")  # fmt: skip
    distrusted: list[str] = []
    if missing.schema is None and missing.kind in SCHEMA_OBJECTS:
        found = _found_elsewhere(missing, catalog, policy, caller, distrusted)
        if found is not None:
            return found
    installed = _install(missing, catalog, policy, caller)
    if distrusted and not installed.ok:
        # What exists is in a schema that cannot be trusted, and nothing else provides it.
        return Plan(refused=distrusted[0])
    return installed


def _found_elsewhere(
    missing: Missing, catalog: Catalog, policy: Policy, caller: Caller, distrusted: list[str]
) -> Plan | None:
    """Put the schema that has the object on the search path, if it is a trusted one.

    Untrusted schemas are left out (their reasons appended to `distrusted`): a
    function found there would run with the caller's rights (CVE-2018-1058).
    """
    on_path = set(catalog.schemas_on_path())
    schemas = []
    for schema in catalog.locate(missing):
        if schema in on_path:
            continue
        info = catalog.schema_info(schema)
        why = refuse_untrusted_schema(info, caller.path_trust) if info is not None else None
        if why:
            distrusted.append(why)
        else:
            schemas.append(schema)
    if not schemas:
        return None
    if policy.extension_schema in schemas:
        chosen = policy.extension_schema
    elif len(schemas) == 1:
        chosen = schemas[0]
    else:
        return Plan(
            reason=f"{missing.describe()} exists in several schemas that are not on the "
            f"search path ({', '.join(sorted(schemas))}): qualify the name or set search_path"
        )
    fixes = [Fix("search_path", chosen), *_persist(chosen, catalog, policy, caller)]
    return Plan(fixes, refused=policy.refuse_kind("search_path"))


def _persist(schema: str, catalog: Catalog, policy: Policy, caller: Caller) -> list[Fix]:
    """Also put the extension schema on the database's default path, so what comes
    after the migration (application queries, string-body functions, operators)
    finds what was healed. Never any other schema: that would hand every session
    a path into a schema someone else may own; and only for a caller who could run
    ``ALTER DATABASE ... SET`` by hand (its owner, or a superuser), into a schema
    every role can trust."""
    info = catalog.schema_info(schema)
    if (
        not policy.persist_search_path
        or "persist_search_path" in policy.disabled_fixes
        or schema != policy.extension_schema
        or not (caller.superuser or caller.owns_database)
        or schema in catalog.database_search_path()
        or (info is not None and refuse_untrusted_schema(info, None))
    ):
        return []
    return [Fix("persist_search_path", schema)]


def persist_plan(schema: str, catalog: Catalog, policy: Policy, caller: Caller) -> Plan:
    """Add `schema` to the database's search_path, where :func:`_persist` allows it."""
    fixes = _persist(schema, catalog, policy, caller)
    if fixes or schema in catalog.database_search_path():
        return Plan(fixes, reason=None if fixes else f"schema {schema} is on the path already")
    return Plan(
        refused=f'adding schema "{schema}" to the database\'s search_path is not allowed for '
        f'role "{caller.role}": only the extension schema ({policy.extension_schema}), while '
        "heal.settings persist_search_path is on, for the database's owner or a superuser, "
        "and only when every role can trust the schema"
    )


def _fits(wanted: tuple[str, ...], candidate: tuple[str, ...], catalog: Catalog) -> bool:
    """Whether printed argument types fit a candidate's, as the server would resolve them."""
    if len(wanted) != len(candidate):
        return False
    for w, c in zip(wanted, candidate, strict=True):
        w_type, c_type = normalize_type(w) if w else "", normalize_type(c) if c else ""
        if w_type in ("", "unknown") or c_type in POLYMORPHIC or w_type == c_type:
            continue
        if not catalog.castable(w_type, c_type):
            return False
    return True


def _choose(
    missing: Missing, candidates: dict[str, list[tuple[str, ...]]], catalog: Catalog
) -> tuple[str | None, str | None, str | None]:
    """Pick the provider, by argument types where they decide; never guess; else say
    why, and the kind of that reason."""
    names = sorted(candidates)
    typed = missing.kind in ("function", "procedure", "operator") and missing.args not in (
        (),
        ANY_ARGS,
    )
    if typed and (len(names) > 1 or catalog.name_on_path(missing)):
        # With the name already visible, the error is about argument types: an
        # extension helps only if it has a fitting signature.
        names = [n for n in names if any(_fits(missing.args, a, catalog) for a in candidates[n])]
    if len(names) == 1:
        return names[0], None, None
    if names:
        return (
            None,
            (
                f"{missing.describe()} is provided by several extensions "
                f"({', '.join(names)}): install the one you mean"
            ),
            None,
        )
    known = catalog.known(missing)
    if known:
        which = " or ".join(f"extension {ext} (OS package {package})" for ext, package in known)
        return (
            None,
            (
                f"{missing.describe()} is provided by {which}, which this server does not have: "
                "install it on the database host, then run the migration again"
            ),
            reasons.UNAVAILABLE,
        )
    if candidates:
        return None, f"no available extension provides {missing.describe()} with these types", None
    return None, f"no available extension provides {missing.describe()}", None


def _install(missing: Missing, catalog: Catalog, policy: Policy, caller: Caller) -> Plan:
    name, reason, kind = _choose(missing, catalog.providers(missing), catalog)
    if name is None:
        return Plan(reason=reason, kind=kind)
    return install_extension(name, catalog, policy, caller, missing.schema, missing.describe())


def install_extension(
    name: str,
    catalog: Catalog,
    policy: Policy,
    caller: Caller,
    schema: str | None = None,
    wanted: str | None = None,
) -> Plan:
    """Install extension `name` (into `schema`, else the extension schema) with what it
    requires, and make it visible: on the search path, and the database's."""
    ext = catalog.extension(name)
    if ext is None:
        return Plan(
            reason=f"extension {name} is not available on this server", kind=reasons.UNAVAILABLE
        )
    if ext.installed_schema is not None:
        return Plan(
            reason=f"extension {name} is installed (schema {ext.installed_schema}) but does not "
            f"provide {wanted or 'what is missing'}: check the name and argument types"
        )
    # Where the statement names it, else where the whole script expects it (a
    # qualified name, its own CREATE EXTENSION ... SCHEMA), else the extension schema.
    target = schema or catalog.home(name) or policy.extension_schema
    result = Plan()
    for dep in _with_requirements(ext, catalog):
        if dep.installed_schema is not None:
            continue
        refused = refuse_extension(dep, policy, caller)
        where = dep.schema or target  # a control file's fixed schema wins
        refused = refused or _untrusted_home(where, catalog, policy, caller)
        if refused and result.refused is None:
            result.refused = refused
        creating = Fix("create_schema", target)
        if where == target and creating not in result.fixes and not catalog.schema_exists(target):
            result.fixes.append(creating)
        result.fixes.append(Fix("create_extension", dep.name, where))
    if schema is None and target not in catalog.schemas_on_path():
        result.fixes.append(Fix("search_path", target))
    result.fixes += _persist(target, catalog, policy, caller)
    return result


def _untrusted_home(schema: str, catalog: Catalog, policy: Policy, caller: Caller) -> str | None:
    """Why an extension must not be installed into existing schema `schema`, if so.

    The extension's script runs as a superuser with that schema first on its path,
    and its objects are found there later. The extension schema goes on every role's
    path, so it must be safe for all; another schema for the caller.
    """
    if schema == "pg_catalog":
        return None
    info = catalog.schema_info(schema)
    if info is None:
        return None
    return refuse_untrusted_schema(info, None if schema == policy.extension_schema else caller.role)


def _with_requirements(ext: Extension, catalog: Catalog) -> list[Extension]:
    """`ext` after everything it requires, each once, dependencies first."""
    ordered: list[Extension] = []
    seen: set[str] = set()

    def visit(e: Extension) -> None:
        if e.name in seen:
            return
        seen.add(e.name)
        for req in e.requires:
            dep = catalog.extension(req)
            if dep is not None:
                visit(dep)
        ordered.append(e)

    visit(ext)
    return ordered


def consult_network(
    planned: Plan, missing: Missing, catalog: Catalog, policy: Policy, caller: Caller
) -> Plan:
    """`planned` (from pgheal's own knowledge and the catalog), or what the learning
    network knows when those found no fix: applied only with network_patterns = apply,
    and always within `policy` (it plans as any fix; :func:`install_extension` and
    heal.apply_fix check it); otherwise named in the reason."""
    if policy.network_patterns == "off" or planned.ok or planned.refused:
        return planned
    if missing.kind in ("schema", "role", "extension"):
        return planned  # never application names: the network knows only extensions' objects
    known = catalog.network(missing)
    if not known:
        return planned
    here = [k for k in known if catalog.extension(k.extension) is not None]
    if here:
        best = here[0]
        if policy.network_patterns == "apply":
            result = install_extension(
                best.extension, catalog, policy, caller, missing.schema, missing.describe()
            )
            if result.fixes or result.refused:
                result.network = best.summary()
                return result
            return planned
        return Plan(
            reason=f"{planned.reason or 'no fix is known here'}; the learning network "
            f"knows one: {best.describe()}. To let pgheal apply network patterns, as a "
            f"superuser: UPDATE heal.settings SET value = 'apply' WHERE name = "
            f"'network_patterns';",
            kind=reasons.NETWORK_SUGGESTED,
        )
    lacking: dict[str, NetworkPattern] = {}
    for k in known:  # one line per extension, the most members first
        if k.extension not in lacking or k.members > lacking[k.extension].members:
            lacking[k.extension] = k
    told = sorted(lacking.values(), key=lambda k: (-k.members, k.extension))
    which = " or ".join(
        f"extension {k.extension}, available on {k.members} member{'s' if k.members != 1 else ''}"
        + (f"; OS package {k.package}" if k.package else "")
        for k in told
    )
    return Plan(
        reason=f"{missing.describe()} is provided by {which} (the learning network), which "
        "this server does not have: install it on the database host, then run the "
        "migration again",
        kind=reasons.UNAVAILABLE,
    )
