"""The learning network in the planner: after pgheal's own knowledge and the catalog,
within the local policy, as heal.settings network_patterns says; and what is shared."""

from __future__ import annotations

import pytest

from heal import reasons
from heal.errors import Missing, classify
from heal.fingerprint import shareable
from heal.planner import Fix, NetworkPattern, consult_network, plan
from heal.policy import Policy, SettingError

from .test_planner import APP, GUEST, SUPERUSER, FakeCatalog, ext, uuid_catalog

UUID = classify("42883", "function uuid_generate_v4() does not exist")
FIXED = NetworkPattern("fix", "uuid-ossp", members=3, applied=5, held=4)


def unknown_here(**kw) -> FakeCatalog:
    """uuid-ossp is on the server, but pgheal's catalog does not know what it provides."""
    return FakeCatalog(extensions={"uuid-ossp": ext("uuid-ossp")},
                       networked={"uuid_generate_v4": [FIXED]}, **kw)  # fmt: skip


def network(catalog: FakeCatalog, policy: Policy, caller=SUPERUSER, missing=UUID):
    return consult_network(plan(missing, catalog, policy, caller), missing, catalog, policy,
                           caller)  # fmt: skip


def test_suggest_names_the_network_fix_and_applies_nothing():
    result = network(unknown_here(), Policy())
    assert not result.fixes and not result.ok
    assert result.kind == reasons.NETWORK_SUGGESTED
    assert "install extension uuid-ossp (fixed it on 3 members; held 4 of 5 times)" in result.reason
    assert "SET value = 'apply' WHERE name = 'network_patterns'" in result.reason


def test_apply_installs_what_the_network_knows_and_says_so():
    result = network(unknown_here(), Policy(network_patterns="apply"))
    assert result.ok and Fix("create_extension", "uuid-ossp", "extensions") in result.fixes
    assert result.network == {"kind": "fix", "extension": "uuid-ossp", "members": 3,
                              "applied": 5, "held": 4}  # fmt: skip


def test_off_leaves_the_local_plan_alone():
    result = network(unknown_here(), Policy(network_patterns="off"))
    assert result.reason == "no available extension provides function uuid_generate_v4()"
    assert result.network is None


def test_never_wider_than_the_local_policy():
    denied = network(unknown_here(), Policy(network_patterns="apply",
                                            deny_extensions=frozenset({"uuid-ossp"})))  # fmt: skip
    assert not denied.ok and "deny_extensions" in denied.refused
    untrusted = FakeCatalog(extensions={"uuid-ossp": ext("uuid-ossp", trusted=False)},
                            networked={"uuid_generate_v4": [FIXED]})  # fmt: skip
    assert not network(untrusted, Policy(network_patterns="apply"), APP).ok
    assert not network(unknown_here(), Policy(network_patterns="apply"), GUEST).ok


def test_local_knowledge_comes_first():
    catalog = uuid_catalog(networked={"uuid_generate_v4": [
        NetworkPattern("fix", "other-ext", members=9, applied=9, held=9)]})  # fmt: skip
    result = network(catalog, Policy(network_patterns="apply"))
    assert Fix("create_extension", "uuid-ossp", "extensions") in result.fixes
    assert result.network is None


def test_an_extension_this_host_lacks_is_named_with_members_and_package():
    catalog = FakeCatalog(
        networked={
            "vector": [
                NetworkPattern("provides", "vector", members=3, package="postgresql-15-pgvector")
            ]
        }
    )
    result = network(catalog, Policy(), missing=Missing("type", "vector"))
    assert result.kind == reasons.UNAVAILABLE
    assert result.reason.startswith(
        "type vector is provided by extension vector, available on 3 members; OS package "
        "postgresql-15-pgvector (the learning network), which this server does not have"
    )


def test_schemas_and_roles_are_never_asked_of_the_network():
    catalog = FakeCatalog(networked={"app": [NetworkPattern("provides", "x", members=1)]})
    result = network(catalog, Policy(create_schemas=False), missing=Missing("schema", "app"))
    assert result.network is None and "create_schemas" in (result.refused or "")


def test_the_setting_takes_three_values():
    assert Policy.from_settings({"network_patterns": "APPLY"}).network_patterns == "apply"
    assert Policy.from_settings({}).network_patterns == "suggest"
    with pytest.raises(SettingError, match="off, suggest, apply"):
        Policy.from_settings({"network_patterns": "always"})


CATALOG_TYPES = frozenset({"int4", "text", "unknown", "hstore"})


def test_shared_objects_lose_their_schema_and_keep_only_catalog_types():
    qualified = Missing("function", "similarity", "app_schema", ("text", "unknown"))
    seen = shareable(qualified, CATALOG_TYPES)
    assert seen is not None and seen.schema is None
    assert seen.describe() == "function similarity(text, unknown)"
    assert shareable(Missing("function", "f", None, ("integer[]",)), CATALOG_TYPES) is not None
    assert shareable(Missing("function", "f", None, ("secret_type",)), CATALOG_TYPES) is None
    assert shareable(Missing("operator", "->", None, ("hstore", "text")), CATALOG_TYPES)


def test_error_text_that_is_no_type_never_leaves():
    """Any role can make up a message with RAISE: only names of catalog shape go out."""
    for args in (("text(ssn=078-05-1120 card=4111)",), ("acme_payroll.int4",),
                 ('"int4"',), ("secret_type",)):  # fmt: skip
        assert shareable(Missing("function", "uuid_generate_v4", None, args), CATALOG_TYPES) is None
    typed = shareable(Missing("function", "f", None, ("character varying(20)", "integer")),
                      CATALOG_TYPES | {"varchar"})  # fmt: skip
    assert typed is not None and typed.describe() == "function f(varchar, int4)"
    assert shareable(Missing("opclass", "gin_trgm_ops", None, ("gin",)), CATALOG_TYPES)
    assert shareable(Missing("opclass", "x", None, ("gin; drop",)), CATALOG_TYPES) is None
