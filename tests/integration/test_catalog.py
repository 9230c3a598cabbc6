"""The extension catalog: learned from the server's scripts, rebuilt when they change."""

from __future__ import annotations

from .conftest import migrate, scalar


def test_catalog_covers_every_available_extension(conn):
    available = scalar(conn, "SELECT count(*) FROM pg_available_extensions")
    assert scalar(conn, "SELECT count(*) FROM heal.available_extensions") == available
    kinds = {r[0] for r in conn.execute("SELECT DISTINCT kind FROM heal.extension_objects")}
    assert {"function", "type", "operator", "opclass", "opfamily", "access_method",
            "cast", "tstemplate", "tablesample", "default_opclass"} <= kinds  # fmt: skip
    row = conn.execute(
        "SELECT requires, trusted, relocatable FROM heal.available_extensions "
        "WHERE name = 'earthdistance'"
    ).fetchone()
    assert row == (["cube"], False, True)
    assert (
        scalar(
            conn,
            "SELECT extension FROM heal.extension_objects WHERE kind = 'function' "
            "AND name = 'uuid_generate_v4'",
        )
        == "uuid-ossp"
    )
    build = conn.execute(
        "SELECT extensions, objects, problems FROM heal.extension_catalog_builds "
        "ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert build[0] == available and build[1] > 1000 and build[2] == []


def test_unchanged_extensions_are_not_parsed_again(conn):
    builds = scalar(conn, "SELECT count(*) FROM heal.extension_catalog_builds")
    assert scalar(conn, "SELECT heal.refresh_extension_catalog()") == 0
    assert scalar(conn, "SELECT count(*) FROM heal.extension_catalog_builds") == builds


def test_a_changed_fingerprint_rebuilds_before_healing(conn):
    conn.execute("UPDATE heal.extension_catalog_builds SET fingerprint = 'stale'")
    conn.execute("DELETE FROM heal.extension_objects")  # as if the server had changed
    builds = scalar(conn, "SELECT count(*) FROM heal.extension_catalog_builds")
    migrate(conn, "CREATE TABLE t (e citext);")
    assert scalar(conn, "SELECT count(*) FROM heal.extension_catalog_builds") == builds + 1
    assert scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'citext'") == 1
