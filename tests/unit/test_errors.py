"""Reading the server's error messages."""

from __future__ import annotations

import pytest

from heal.errors import classify, split_args


@pytest.mark.parametrize(
    ("sqlstate", "message", "kind", "name", "schema", "args"),
    [
        ("3F000", 'schema "app" does not exist', "schema", "app", None, ()),
        ("42883", "function uuid_generate_v4() does not exist", "function", "uuid_generate_v4",
         None, ()),
        ("42883", "function extensions.gen_random_bytes(integer) does not exist", "function",
         "gen_random_bytes", "extensions", ("integer",)),
        ("42883", 'function "Odd Name"(text, numeric(10, 2)) does not exist', "function",
         "Odd Name", None, ("text", "numeric(10, 2)")),
        ("42883", "procedure refresh(integer) does not exist", "procedure", "refresh", None,
         ("integer",)),
        ("42883", "operator does not exist: character varying % character varying",
         "operator", "%", None, ("character varying", "character varying")),
        ("42883", "operator does not exist: - hstore", "operator", "-", None, ("", "hstore")),
        ("42704", 'type "citext" does not exist', "type", "citext", None, ()),
        ("42704", 'type "ext.citext[]" does not exist', "type", "citext", "ext", ()),
        ("42704", 'operator class "gin_trgm_ops" does not exist for access method "gin"',
         "opclass", "gin_trgm_ops", None, ("gin",)),
        ("42704", 'access method "bloom" does not exist', "access_method", "bloom", None, ()),
        ("42704", 'data type integer has no default operator class for access method "gist"',
         "default_opclass", "int4", None, ("gist",)),
        ("42704", "tablesample method system_rows does not exist", "tablesample", "system_rows",
         None, ()),
        ("42704", 'text search template "intdict_template" does not exist', "tstemplate",
         "intdict_template", None, ()),
        ("42704", 'text search dictionary "public.unaccent" does not exist', "tsdictionary",
         "unaccent", "public", ()),
        ("42704", 'role "app_reader" does not exist', "role", "app_reader", None, ()),
        ("42P01", 'relation "pg_stat_statements" does not exist', "relation",
         "pg_stat_statements", None, ()),
        ("42P01", 'relation "ext.t" does not exist', "relation", "t", "ext", ()),
    ],
)  # fmt: skip
def test_classify(sqlstate, message, kind, name, schema, args):
    missing = classify(sqlstate, message)
    assert (missing.kind, missing.name, missing.schema, missing.args) == (kind, name, schema, args)
    assert missing.pattern


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        ("42P01", "relation t does not exist"),  # not the server's spelling
        ("42883", "could not identify an equality operator for type json"),
        ("3F000", "no schema has been selected to create in"),
        ("22012", "division by zero"),
    ],
)
def test_not_a_missing_dependency(sqlstate, message):
    assert classify(sqlstate, message) is None


def test_split_args_keeps_parenthesised_types():
    assert split_args("") == ()
    assert split_args("numeric(10, 2), text") == ("numeric(10, 2)", "text")


@pytest.mark.parametrize(
    "message",
    [
        "operator does not exist: " + "+ " * 60000 + "\nx",
        "function f(" + "integer, " * 1000 + "integer) does not exist",
        'type "a\nb" does not exist',
    ],
)
def test_messages_none_of_the_servers_are_not_classified(message):
    assert classify("42883", message) is None and classify("42704", message) is None
