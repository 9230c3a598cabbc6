"""search_path values read and written as the server does (SplitIdentifierString)."""

from __future__ import annotations

import pytest

from heal.searchpath import (
    PathSyntaxError,
    appended,
    join_path,
    relation_lookup,
    resolved,
    split_path,
)


@pytest.mark.parametrize(
    ("value", "names"),
    [
        ("", []),
        ('""', []),
        ('"$user", public', ["$user", "public"]),
        ('"my,schema", public', ["my,schema", "public"]),
        ('"a""b" ,  Public,"X Y"', ['a"b', "public", "X Y"]),
        ("ÄB, cD", ["Äb", "cd"]),
        ("foo;bar", ["foo;bar"]),
        ("a" * 70, ["a" * 63]),
    ],
)
def test_split_like_the_server(value, names):
    assert split_path(value) == names


@pytest.mark.parametrize("value", ['"open', "a,,b", "a b", "a,"])
def test_values_the_server_rejects(value):
    with pytest.raises(PathSyntaxError):
        split_path(value)


def test_join_quotes_what_needs_it_and_round_trips():
    names = ["$user", "public", "my,schema", 'a"b', "Upper", "extensions"]
    value = join_path(names)
    assert value == '"$user", public, "my,schema", "a""b", "Upper", extensions'
    assert split_path(value) == names


def test_appended_keeps_quoted_names_and_never_repeats():
    value = '"my,schema", public'
    assert appended(value, "extensions") == '"my,schema", public, extensions'
    assert appended('"my,schema", public, extensions', "extensions") == (
        '"my,schema", public, extensions'
    )
    assert appended("", "extensions") == "extensions"


def test_resolved_user():
    assert resolved('"$user", public', "app") == ["app", "public"]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["alice", "public"], ["pg_temp", "pg_catalog", "alice", "public"]),
        (["public", "pg_catalog"], ["pg_temp", "public", "pg_catalog"]),
        (["public", "pg_temp"], ["pg_catalog", "public", "pg_temp"]),
        ([], ["pg_temp", "pg_catalog"]),
    ],
)
def test_a_table_is_looked_for_first_in_the_sessions_temporary_schema_then_pg_catalog(
    names, expected
):
    assert relation_lookup(names) == expected
