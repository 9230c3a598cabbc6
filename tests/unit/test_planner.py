"""Planning fixes against a catalog, and the policy that allows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pglast

from heal.errors import Missing, classify
from heal.planner import Fix, normalize_type, plan
from heal.policy import SETTING_NAMES, Caller, Extension, Policy, SchemaInfo

SUPERUSER = Caller("postgres", superuser=True, create_on_database=True)
APP = Caller("app", superuser=False, create_on_database=True)
GUEST = Caller("guest", superuser=False, create_on_database=False)
OWNER = Caller("owner", superuser=False, create_on_database=True, owns_database=True)


def ext(name: str, **kw) -> Extension:
    return Extension(name, "1.0", kw.pop("trusted", True), kw.pop("superuser", True),
                     kw.pop("relocatable", True), **kw)  # fmt: skip


@dataclass
class FakeCatalog:
    schemas: set[str] = field(default_factory=lambda: {"public"})
    path: list[str] = field(default_factory=lambda: ["pg_catalog", "public"])
    located: dict[str, list[str]] = field(default_factory=dict)
    provided: dict[str, dict[str, list[tuple[str, ...]]]] = field(default_factory=dict)
    extensions: dict[str, Extension] = field(default_factory=dict)
    db_path: list[str] = field(default_factory=lambda: ["$user", "public"])
    visible: set[str] = field(default_factory=set)
    known_ext: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    casts: set[tuple[str, str]] = field(default_factory=lambda: {("varchar", "text")})
    #: Schemas that exist, with who owns them (by default a superuser, nobody else creates).
    owners: dict[str, SchemaInfo] = field(default_factory=dict)
    #: Where the script expects an extension.
    homes: dict[str, str] = field(default_factory=dict)
    #: What the learning network knows, by object name.
    networked: dict[str, list] = field(default_factory=dict)

    def schema_info(self, name):
        if name not in self.schemas and name not in self.owners:
            return None
        return self.owners.get(name, SchemaInfo(name, "postgres", owner_superuser=True))

    def schema_exists(self, name):
        return name in self.schemas

    def schemas_on_path(self):
        return self.path

    def locate(self, missing):
        return self.located.get(missing.name, [])

    def providers(self, missing):
        return self.provided.get(missing.name, {})

    def extension(self, name):
        return self.extensions.get(name)

    def database_search_path(self):
        return self.db_path

    def name_on_path(self, missing):
        return missing.name in self.visible

    def known(self, missing):
        return self.known_ext.get(missing.name, [])

    def castable(self, source, target):
        return (source, target) in self.casts

    def home(self, extension):
        return self.homes.get(extension)

    def network(self, missing):
        return self.networked.get(missing.name, [])


def uuid_catalog(**kw) -> FakeCatalog:
    return FakeCatalog(
        provided={"uuid_generate_v4": {"uuid-ossp": [()]}},
        extensions={"uuid-ossp": ext("uuid-ossp")},
        **kw,
    )


UUID = classify("42883", "function uuid_generate_v4() does not exist")


def test_missing_schema():
    result = plan(Missing("schema", "app"), FakeCatalog(), Policy(), APP)
    assert result.ok and result.fixes == [Fix("create_schema", "app")]


def test_missing_function_installs_into_the_extension_schema():
    result = plan(UUID, uuid_catalog(), Policy(), SUPERUSER)
    assert result.fixes == [
        Fix("create_schema", "extensions"),
        Fix("create_extension", "uuid-ossp", "extensions"),
        Fix("search_path", "extensions"),
        Fix("persist_search_path", "extensions"),
    ]


def test_persisting_the_path_can_be_off_and_is_skipped_when_present():
    off = plan(UUID, uuid_catalog(), Policy(persist_search_path=False), SUPERUSER)
    assert Fix("persist_search_path", "extensions") not in off.fixes
    present = plan(UUID, uuid_catalog(db_path=["public", "extensions"]), Policy(), SUPERUSER)
    assert Fix("persist_search_path", "extensions") not in present.fixes


def test_found_elsewhere_only_touches_the_search_path():
    catalog = uuid_catalog(located={"uuid_generate_v4": ["extensions"]})
    result = plan(UUID, catalog, Policy(), OWNER)
    assert result.fixes == [
        Fix("search_path", "extensions"),
        Fix("persist_search_path", "extensions"),
    ]
    # Only the database's owner (or a superuser) could ALTER DATABASE ... SET by hand.
    assert plan(UUID, catalog, Policy(), APP).fixes == [Fix("search_path", "extensions")]


def test_a_schema_others_can_create_in_is_never_put_on_the_path():
    tools = SchemaInfo("tools", "mallory", owner_superuser=False)
    catalog = uuid_catalog(located={"uuid_generate_v4": ["tools"]}, owners={"tools": tools})
    result = plan(UUID, catalog, Policy(), SUPERUSER)
    assert [f.kind for f in result.fixes][:2] == ["create_schema", "create_extension"]
    assert Fix("search_path", "tools") not in result.fixes
    # Nothing else provides it: refused, naming the schema and why.
    catalog.provided = {}
    refused = plan(UUID, catalog, Policy(), SUPERUSER)
    assert not refused.ok
    assert 'schema "tools" is not trusted' in refused.refused
    assert 'owned by role "mallory"' in refused.refused
    # PUBLIC with CREATE in a superuser's schema is just as bad; the owner itself may use it.
    shared = SchemaInfo("tools", "postgres", owner_superuser=True, creators=("PUBLIC",))
    catalog.owners = {"tools": shared}
    assert "PUBLIC can create objects in it" in plan(UUID, catalog, Policy(), APP).refused
    mine = SchemaInfo("tools", "app", owner_superuser=False)
    catalog.owners = {"tools": mine}
    assert plan(UUID, catalog, Policy(), APP).fixes == [Fix("search_path", "tools")]


def test_an_extension_schema_someone_else_made_receives_nothing():
    catalog = uuid_catalog(
        schemas={"public", "extensions"},
        owners={"extensions": SchemaInfo("extensions", "mallory", owner_superuser=False)},
    )
    result = plan(UUID, catalog, Policy(), SUPERUSER)
    assert not result.ok
    assert 'schema "extensions" is not trusted for every role' in result.refused


def test_system_schemas_are_never_created():
    result = plan(Missing("schema", "pg_temp"), FakeCatalog(), Policy(), SUPERUSER)
    assert not result.ok and not result.fixes
    assert "system schema" in result.reason


def test_found_in_a_user_schema_is_not_persisted():
    catalog = uuid_catalog(located={"uuid_generate_v4": ["util"]})
    assert plan(UUID, catalog, Policy(), APP).fixes == [Fix("search_path", "util")]


def test_found_in_several_schemas_is_ambiguous():
    catalog = uuid_catalog(located={"uuid_generate_v4": ["a", "b"]})
    result = plan(UUID, catalog, Policy(), APP)
    assert not result.ok and "several schemas" in result.reason


def test_requirements_come_first_and_each_is_checked():
    catalog = FakeCatalog(
        provided={"ll_to_earth": {"earthdistance": [("float8", "float8")]}},
        extensions={"cube": ext("cube"), "earthdistance": ext("earthdistance", requires=("cube",))},
        schemas={"public", "extensions"},
    )
    missing = classify(
        "42883", "function ll_to_earth(double precision, double precision) does not exist"
    )
    result = plan(missing, catalog, Policy(), SUPERUSER)
    assert [f.target for f in result.fixes if f.kind == "create_extension"] == [
        "cube",
        "earthdistance",
    ]
    denied = plan(missing, catalog, Policy(deny_extensions=frozenset({"cube"})), SUPERUSER)
    assert not denied.ok and '"cube" is on the deny list' in denied.refused


def test_fixed_schema_from_the_control_file_wins():
    catalog = FakeCatalog(
        provided={"f": {"pinned": [()]}},
        extensions={"pinned": ext("pinned", relocatable=False, schema="pg_catalog")},
    )
    result = plan(Missing("function", "f"), catalog, Policy(), SUPERUSER)
    assert Fix("create_extension", "pinned", "pg_catalog") in result.fixes


def test_ambiguous_providers_are_decided_by_argument_types_or_reported():
    catalog = FakeCatalog(
        provided={"f": {"a": [("int4",)], "b": [("text",)]}},
        extensions={"a": ext("a"), "b": ext("b")},
    )
    by_type = plan(Missing("function", "f", args=("integer",)), catalog, Policy(), SUPERUSER)
    assert Fix("create_extension", "a", "extensions") in by_type.fixes
    unknown = plan(Missing("function", "f", args=("unknown",)), catalog, Policy(), SUPERUSER)
    assert not unknown.ok and "several extensions (a, b)" in unknown.reason


def test_no_provider_and_installed_provider():
    assert "no available extension" in plan(UUID, FakeCatalog(), Policy(), SUPERUSER).reason
    installed = uuid_catalog()
    installed.extensions["uuid-ossp"] = ext("uuid-ossp", installed_schema="public")
    assert "is installed" in plan(UUID, installed, Policy(), SUPERUSER).reason


def test_qualified_name_installs_into_that_schema_without_touching_the_path():
    missing = classify("42883", "function util.uuid_generate_v4() does not exist")
    result = plan(missing, uuid_catalog(schemas={"public", "util"}), Policy(), SUPERUSER)
    assert result.fixes == [Fix("create_extension", "uuid-ossp", "util")]


def test_policy_by_role():
    untrusted = FakeCatalog(provided={"f": {"u": [()]}}, extensions={"u": ext("u", trusted=False)})
    assert plan(Missing("function", "f"), untrusted, Policy(), SUPERUSER).ok
    refused = plan(Missing("function", "f"), untrusted, Policy(), APP)
    assert "not trusted" in refused.refused and "allow_extensions" in refused.refused
    allowed = Policy(allow_extensions=frozenset({"u"}))
    assert plan(Missing("function", "f"), untrusted, allowed, APP).ok
    assert "no CREATE privilege" in plan(UUID, uuid_catalog(), Policy(), GUEST).refused
    assert (
        "no CREATE privilege"
        in plan(Missing("schema", "s"), FakeCatalog(), Policy(), GUEST).refused
    )
    off = plan(Missing("schema", "s"), FakeCatalog(), Policy(create_schemas=False), SUPERUSER)
    assert "create_schemas" in off.refused


def test_policy_from_settings():
    policy = Policy.from_settings(
        {"allow_extensions": "dblink, postgres_fdw", "max_attempts": "2", "create_schemas": "off"}
    )
    assert policy.allow_extensions == {"dblink", "postgres_fdw"}
    assert policy.max_attempts == 2 and not policy.create_schemas
    assert "dblink" in policy.deny_extensions


def test_fix_sql_quotes_names():
    def quote(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    assert Fix("create_extension", "uuid-ossp", "my schema").sql(quote) == (
        'CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA "my schema"'
    )
    assert Fix("create_schema", 'x"; DROP').sql(quote) == 'CREATE SCHEMA IF NOT EXISTS "x""; DROP"'


def test_normalize_type():
    assert normalize_type("integer[]") == "_int4"
    assert normalize_type("character varying(20)") == "varchar"
    assert normalize_type("double precision") == "float8"


def test_name_visible_with_other_types_needs_a_fitting_signature():
    # replace(integer, integer, integer): pg_catalog has replace(text, text, text), and
    # citext has replace(citext, citext, citext); installing citext would not help.
    catalog = FakeCatalog(
        provided={"replace": {"citext": [("citext", "citext", "citext")]}},
        extensions={"citext": ext("citext")},
        visible={"replace"},
    )
    missing = classify("42883", "function replace(integer, integer, integer) does not exist")
    result = plan(missing, catalog, Policy(), SUPERUSER)
    assert not result.ok and "with these types" in result.reason


def test_implicit_casts_and_unknown_literals_fit():
    catalog = FakeCatalog(
        provided={"similarity": {"pg_trgm": [("text", "text")]}},
        extensions={"pg_trgm": ext("pg_trgm")},
        visible={"similarity"},
    )
    missing = classify("42883", "function similarity(character varying, unknown) does not exist")
    assert plan(missing, catalog, Policy(), SUPERUSER).ok


def test_well_known_extension_the_server_lacks_is_named_with_its_package():
    catalog = FakeCatalog(known_ext={"vector": [("vector", "postgresql-15-pgvector")]})
    missing = classify("42704", 'type "vector" does not exist')
    reason = plan(missing, catalog, Policy(), SUPERUSER).reason
    assert "extension vector (OS package postgresql-15-pgvector)" in reason


def test_roles_only_from_the_policy_list():
    missing = classify("42704", 'role "reader" does not exist')
    refused = plan(missing, FakeCatalog(), Policy(), SUPERUSER)
    assert "grant_roles" in refused.refused
    allowed = plan(missing, FakeCatalog(), Policy(grant_roles=frozenset({"reader"})), SUPERUSER)
    assert allowed.ok and allowed.fixes == [Fix("create_role", "reader")]


def test_disabled_fix_kinds_are_refused():
    policy = Policy(disabled_fixes=frozenset({"create_extension"}))
    assert "disabled_fixes" in plan(UUID, uuid_catalog(), policy, SUPERUSER).refused


def installed_settings() -> dict[str, str]:
    """The defaults the install writes into heal.settings (sql/idempotent/0010_settings.sql)."""
    sql = (Path(__file__).parents[2] / "sql" / "idempotent" / "0010_settings.sql").read_text()
    for raw in pglast.parse_sql(sql):
        stmt = raw.stmt
        if isinstance(stmt, pglast.ast.InsertStmt) and stmt.relation.relname == "settings":
            return {row[0].val.sval: row[2].val.sval for row in stmt.selectStmt.valuesLists}
    raise AssertionError("no INSERT INTO heal.settings")


def test_the_installed_settings_are_the_policy_defaults():
    """The defaults are written twice, as rows and as the Policy a missing row falls back to."""
    settings = installed_settings()
    assert set(settings) == SETTING_NAMES
    assert Policy.from_settings(settings) == Policy() == Policy.from_settings({})
