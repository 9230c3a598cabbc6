"""The learning network over logical replication: a hub, its members, and watching them.

A member publishes its ``heal.shared_patterns``; the hub subscribes to every member
(its rows arrive in the hub's own ``heal.shared_patterns``, where a trigger merges
them into ``heal.network_patterns``) and publishes the merged rows, to which every
member subscribes. Replication slots are made by this module on the publishing side
before each ``CREATE SUBSCRIPTION ... WITH (create_slot = false)``: then a hub and a
member may even share one cluster, where a subscription making its own slot waits
for itself.

Each function takes connections and returns data; the CLI renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

#: Publication of a member's shared rows, and of a hub's merged rows.
MEMBER_PUBLICATION = "pgheal_shared"
HUB_PUBLICATION = "pgheal_network"
#: How many of each a join takes on either side, while the first copy of a table
#: runs (one more slot, walsender and worker than afterwards).
NEEDED = 2


class NetworkError(Exception):
    """A network command that cannot be carried out; the message says what to change."""


def hub_subscription(member_id: str) -> str:
    """The hub's subscription to a member (and its slot, on the member)."""
    return "pgheal_from_" + member_id.replace("-", "")


def member_subscription(member_id: str) -> str:
    """A member's subscription to its hub (and its slot, on the hub)."""
    return "pgheal_hub_" + member_id.replace("-", "")


# -- prerequisites -----------------------------------------------------------------------

_CAPACITY = """
SELECT current_setting('wal_level') AS wal_level,
       current_setting('max_replication_slots')::int AS max_replication_slots,
       (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS slots,
       current_setting('max_wal_senders')::int AS max_wal_senders,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity
         WHERE backend_type = 'walsender')::int AS walsenders,
       current_setting('max_logical_replication_workers')::int
           AS max_logical_replication_workers,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity
         WHERE backend_type = 'logical replication worker')::int AS workers,
       current_setting('max_worker_processes')::int AS max_worker_processes,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity
         WHERE backend_type NOT IN ('client backend', 'walsender', 'autovacuum launcher',
                                    'autovacuum worker', 'checkpointer', 'background writer',
                                    'walwriter', 'startup', 'archiver', 'walreceiver',
                                    'logger', 'stats collector'))::int AS background_workers,
       (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS superuser,
       pg_catalog.to_regclass('heal.network_member') IS NOT NULL AS installed
"""


def problems(conn: psycopg.Connection, where: str) -> list[str]:
    """What keeps the database of `conn` from taking part (as hub or member: each
    publishes and subscribes), each with the exact change that would fix it."""
    with conn.cursor(row_factory=dict_row) as cur:
        c = cur.execute(_CAPACITY).fetchone()
    assert c is not None
    found = []
    if not c["installed"]:
        found.append(f"{where}: pgheal is not installed in this database: run pgheal install "
                     "first")  # fmt: skip
    if not c["superuser"]:
        found.append(f"{where}: publications and subscriptions take a superuser "
                     "(CREATE SUBSCRIPTION): connect as one")  # fmt: skip
    restart = []
    if c["wal_level"] != "logical":
        restart.append(("wal_level", "logical", f"wal_level is {c['wal_level']}"))
    for setting, used in (
        ("max_replication_slots", c["slots"]),
        ("max_wal_senders", c["walsenders"]),
        ("max_logical_replication_workers", c["workers"]),
    ):
        if c[setting] - used < NEEDED:
            restart.append((setting, str(max(2 * c[setting], used + NEEDED)),
                            f"{setting} is {c[setting]} with {used} in use"))  # fmt: skip
    workers_wanted = c["background_workers"] + NEEDED
    if c["max_worker_processes"] < workers_wanted:
        restart.append(("max_worker_processes", str(max(2 * c["max_worker_processes"],
                                                        workers_wanted)),
                        f"max_worker_processes is {c['max_worker_processes']} with "
                        f"{c['background_workers']} in use"))  # fmt: skip
    if restart:
        why = "; ".join(r[2] for r in restart)
        change = " ".join(f"ALTER SYSTEM SET {name} = {value};" for name, value, _ in restart)
        found.append(f"{where}: {why} (the network needs logical replication and "
                     f"{NEEDED} free replication slots, WAL senders and logical replication "
                     f"workers): {change} then restart the server")  # fmt: skip
    return found


def _check(*sides: tuple[psycopg.Connection, str]) -> None:
    found = [p for conn, where in sides for p in problems(conn, where)]
    if found:
        raise NetworkError("; ".join(found))


# -- the hub ---------------------------------------------------------------------------


@dataclass
class HubReport:
    publication: str
    members: int
    patterns: int
    created: bool


def hub(conn: psycopg.Connection) -> HubReport:
    """Make the database of `conn` a hub: merge the rows its members' subscriptions
    bring (the trigger fires for replicated rows too), publish the merged ones."""
    _check((conn, "hub"))
    me = _me(conn)
    if me["joined_at"] is not None:
        raise NetworkError("this database is a member of a hub: a hub is no member "
                           "(pgheal network leave first)")  # fmt: skip
    created = not me["is_hub"]
    with conn.transaction():
        conn.execute("UPDATE heal.network_member SET is_hub = true, "
                     "hub_since = coalesce(hub_since, pg_catalog.now())")  # fmt: skip
        conn.execute("ALTER TABLE heal.shared_patterns ENABLE ALWAYS TRIGGER shared_patterns_merge")
        if not _publication_exists(conn, HUB_PUBLICATION):
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE heal.network_patterns").format(
                sql.Identifier(HUB_PUBLICATION)))  # fmt: skip
        conn.execute("SELECT heal.merge_network()")
    members = _scalar(conn, "SELECT count(*) FROM heal.network_members")
    patterns = _scalar(conn, "SELECT count(*) FROM heal.network_patterns")
    return HubReport(HUB_PUBLICATION, members, patterns, created)


# -- members -----------------------------------------------------------------------------


@dataclass
class JoinReport:
    member_id: str
    shared: int
    subscriptions: dict[str, str] = field(default_factory=dict)


def join(
    member: psycopg.Connection,
    hub_conn: psycopg.Connection,
    member_conninfo: str,
    hub_conninfo: str,
) -> JoinReport:
    """Make `member` a member of `hub_conn`'s hub, replicating both ways.

    `member_conninfo` is how the hub's server reaches the member, `hub_conninfo` how
    the member's server reaches the hub (each stored in a subscription: a password in
    it is readable by superusers only)."""
    _check((member, "member"), (hub_conn, "hub"))
    me, the_hub = _me(member), _me(hub_conn)
    if not the_hub["is_hub"]:
        raise NetworkError("the --hub database is not a hub: run pgheal network hub --dsn HUB "
                           "first")  # fmt: skip
    if me["is_hub"]:
        raise NetworkError("this database is a hub: a hub is no member of another")
    if me["member_id"] == the_hub["member_id"]:
        raise NetworkError("the member and the hub are the same database")
    if me["joined_at"] is not None:
        raise NetworkError(
            f"this database is a member already (subscription "
            f"{member_subscription(me['member_id'])}): pgheal network leave first"
        )
    # A new membership, a new random id: a database copied from a member (a template,
    # a restored dump) never speaks with another's.
    with member.transaction():
        member_id = _scalar(member, """UPDATE heal.network_member
                                          SET member_id = pg_catalog.gen_random_uuid()
                                       RETURNING member_id::text""")  # fmt: skip
        member.execute("DELETE FROM heal.shared_patterns")
        member.execute("TRUNCATE heal.network_patterns")
        shared = _scalar(member, "SELECT heal.share_patterns()")
        if not _publication_exists(member, MEMBER_PUBLICATION):
            member.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE heal.shared_patterns").format(
                sql.Identifier(MEMBER_PUBLICATION)))  # fmt: skip
    inbound, outbound = hub_subscription(member_id), member_subscription(member_id)
    try:
        hub_conn.execute("INSERT INTO heal.network_members (member_id, subscription) "
                         "VALUES (%s, %s)", (member_id, inbound))  # fmt: skip
        _subscribe(hub_conn, member, inbound, member_conninfo, MEMBER_PUBLICATION)
        _subscribe(member, hub_conn, outbound, hub_conninfo, HUB_PUBLICATION)
        member.execute("UPDATE heal.network_member SET joined_at = pg_catalog.now()")
    except BaseException:
        _undo(member, hub_conn, member_id)
        raise
    return JoinReport(member_id, shared, {"hub": inbound, "member": outbound})


def _subscribe(
    subscriber: psycopg.Connection,
    publisher: psycopg.Connection,
    name: str,
    conninfo: str,
    publication: str,
) -> None:
    publisher.execute("SELECT pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput')",
                      (name,))  # fmt: skip
    statement = sql.SQL(
        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
        "WITH (create_slot = false, slot_name = {})"
    ).format(sql.Identifier(name), sql.Literal(make_conninfo(conninfo)),
             sql.Identifier(publication), sql.Literal(name))  # fmt: skip
    subscriber.execute(statement)


@dataclass
class LeaveReport:
    member_id: str
    removed: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)


def leave(member: psycopg.Connection, hub_conn: psycopg.Connection | None) -> LeaveReport:
    """Take `member` out of its hub: both subscriptions, their slots, the member's
    publication, its rows on the hub (and the fleet's on the member). Without the hub
    (gone for good), what is on the hub is named in ``left_behind``."""
    me = _me(member)
    if me["is_hub"]:
        raise NetworkError("this database is a hub, not a member")
    member_id = me["member_id"]
    report = LeaveReport(member_id)
    _undo(member, hub_conn, member_id, report)
    return report


def _undo(
    member: psycopg.Connection,
    hub_conn: psycopg.Connection | None,
    member_id: str,
    report: LeaveReport | None = None,
) -> None:
    """Remove whatever of a membership exists, each part on its own: what a failed
    join made, or a whole membership."""
    report = report or LeaveReport(member_id)
    inbound, outbound = hub_subscription(member_id), member_subscription(member_id)
    _unsubscribe(member, hub_conn, outbound, "member", report)
    if hub_conn is not None:
        _unsubscribe(hub_conn, member, inbound, "hub", report)
        with hub_conn.transaction():
            hub_conn.execute("DELETE FROM heal.shared_patterns WHERE member_id = %s", (member_id,))
            if hub_conn.execute("DELETE FROM heal.network_members WHERE member_id = %s",
                                (member_id,)).rowcount:  # fmt: skip
                report.removed.append(f"hub: member {member_id} and its patterns")
    else:
        _drop_slot(member, inbound, "member", report)
        report.left_behind.append(
            f"hub: subscription {inbound} and slot {outbound} (run pgheal network leave with "
            "--hub to remove them)"
        )
    if _publication_exists(member, MEMBER_PUBLICATION):
        member.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(MEMBER_PUBLICATION)))
        report.removed.append(f"member: publication {MEMBER_PUBLICATION}")
    with member.transaction():
        member.execute("TRUNCATE heal.network_patterns")
        member.execute("UPDATE heal.network_member SET joined_at = NULL")


def _unsubscribe(
    subscriber: psycopg.Connection,
    publisher: psycopg.Connection | None,
    name: str,
    where: str,
    report: LeaveReport,
) -> None:
    """Drop subscription `name` and its slot on the publisher, whether or not the
    publisher can be reached from the subscriber's server."""
    if _scalar(subscriber, "SELECT count(*) FROM pg_catalog.pg_subscription WHERE subname = %s",
               (name,)):  # fmt: skip
        ident = sql.Identifier(name)
        subscriber.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
        subscriber.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
        subscriber.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))
        report.removed.append(f"{where}: subscription {name}")
    if publisher is not None:
        _drop_slot(publisher, name, "member" if where == "hub" else "hub", report)


def _drop_slot(conn: psycopg.Connection, name: str, where: str, report: LeaveReport) -> None:
    """Drop replication slot `name`, once the walsender that used it has gone (a
    disabled subscription's worker exits on its own; this waits for it, or ends it)."""
    for _ in range(100):
        row = conn.execute("SELECT active_pid FROM pg_catalog.pg_replication_slots "
                           "WHERE slot_name = %s", (name,)).fetchone()  # fmt: skip
        if row is None:
            return
        if row[0] is None:
            conn.execute("SELECT pg_catalog.pg_drop_replication_slot(%s)", (name,))
            report.removed.append(f"{where}: replication slot {name}")
            return
        conn.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (row[0],))
        conn.execute("SELECT pg_catalog.pg_sleep(0.05)")
    report.left_behind.append(f"{where}: replication slot {name} is still in use")


# -- watching ----------------------------------------------------------------------------


def status(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """``heal.network``: this database's role, and each subscription with its lag."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """SELECT role, member_id::text, peer, subscription, enabled, running,
                      last_sync::text, last_contact::text,
                      extract(epoch FROM lag)::float8 AS lag_seconds,
                      patterns_in, patterns_out
                 FROM heal.network ORDER BY subscription NULLS FIRST"""
        ).fetchall()
    return rows


# -- helpers -----------------------------------------------------------------------------


def _me(conn: psycopg.Connection) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT member_id::text, is_hub, joined_at FROM heal.network_member"
                          ).fetchone()  # fmt: skip
    if row is None:
        raise NetworkError("heal.network_member is empty: run pgheal install again")
    return row


def _publication_exists(conn: psycopg.Connection, name: str) -> bool:
    return bool(_scalar(conn, "SELECT count(*) FROM pg_catalog.pg_publication WHERE pubname = %s",
                        (name,)))  # fmt: skip


def _scalar(conn: psycopg.Connection, query: str, params: tuple | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None
