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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from .problems import CommandError

#: Publication of a member's shared rows, and of a hub's merged rows.
MEMBER_PUBLICATION = "pgheal_shared"
HUB_PUBLICATION = "pgheal_network"
#: The hub's triggers on heal.shared_patterns.
HUB_TRIGGERS = ("shared_patterns_check", "shared_patterns_merge", "shared_patterns_no_truncate")
#: How many of each a join takes on either side, while the first copy of a table
#: runs (one more slot, walsender and worker than afterwards).
NEEDED = 2


class NetworkError(CommandError):
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
       (SELECT count(*) FROM pg_catalog.pg_replication_origin)::int AS origins,
       current_setting('max_wal_senders')::int AS max_wal_senders,
       -- every logical slot may have its WAL sender, and physical standbys have theirs
       ((SELECT count(*) FROM pg_catalog.pg_replication_slots WHERE slot_type = 'logical')
        + (SELECT count(*) FROM pg_catalog.pg_stat_replication r
            WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_replication_slots s
                               WHERE s.active_pid = r.pid AND s.slot_type = 'logical')))::int
           AS walsenders,
       current_setting('max_logical_replication_workers')::int
           AS max_logical_replication_workers,
       -- every enabled subscription of the cluster wants its worker, running or not
       greatest((SELECT count(*) FROM pg_catalog.pg_subscription WHERE subenabled),
                (SELECT count(*) FROM pg_catalog.pg_stat_activity
                  WHERE backend_type = 'logical replication worker'))::int AS workers,
       current_setting('max_worker_processes')::int AS max_worker_processes,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity
         WHERE backend_type NOT IN ('client backend', 'walsender', 'autovacuum launcher',
                                    'autovacuum worker', 'checkpointer', 'background writer',
                                    'walwriter', 'startup', 'archiver', 'walreceiver',
                                    'logger', 'stats collector', 'logical replication worker',
                                    'logical replication launcher', 'parallel worker'))::int
           AS other_workers,
       current_setting('max_sync_workers_per_subscription')::int
           AS max_sync_workers_per_subscription,
       (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS superuser,
       pg_catalog.to_regclass('heal.network_member') IS NOT NULL AS installed
"""


def problems(conn: psycopg.Connection, where: str, need: int = NEEDED) -> list[str]:
    """What keeps the database of `conn` from taking part (as hub or member: each
    publishes and subscribes), each with the exact change that would fix it. What is
    in use is counted from what is configured (every slot, every enabled
    subscription), not from what runs now: a member that is down still needs its
    share when it returns. `need` doubles when hub and member share a cluster."""
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
    restart: dict[str, tuple[int | str, str]] = {}
    if c["wal_level"] != "logical":
        restart["wal_level"] = ("logical", f"wal_level is {c['wal_level']}")
    for setting, used, label in (
        ("max_replication_slots", max(c["slots"], c["origins"]), "slots or replication origins"),
        ("max_wal_senders", c["walsenders"], "WAL senders"),
        ("max_logical_replication_workers", c["workers"], "subscription workers"),
    ):
        if c[setting] - used < need:
            restart[setting] = (max(2 * c[setting], used + need),
                                f"{setting} is {c[setting]} with {used} {label} taken")  # fmt: skip
    workers = int(restart.get("max_logical_replication_workers",
                              (c["max_logical_replication_workers"], ""))[0])  # fmt: skip
    wanted = workers + 1 + c["other_workers"]  # and the launcher, pg_cron's, ...
    if c["max_worker_processes"] < wanted:
        restart["max_worker_processes"] = (
            wanted, f"max_worker_processes is {c['max_worker_processes']}, below the "
            f"{workers} subscription workers, their launcher and {c['other_workers']} other "
            "background workers (parallel queries take theirs from it too)")  # fmt: skip
    if c["max_sync_workers_per_subscription"] < 1:
        restart["max_sync_workers_per_subscription"] = (
            2,
            "max_sync_workers_per_subscription is 0: no table's first copy would run",
        )
    if restart:
        why = "; ".join(text for _, text in restart.values())
        change = " ".join(f"ALTER SYSTEM SET {name} = {value};"
                          for name, (value, _) in restart.items())  # fmt: skip
        found.append(f"{where}: {why} (the network needs logical replication and {need} free "
                     f"replication slots, WAL senders and subscription workers): {change} "
                     "then restart the server")  # fmt: skip
    return found


def _check(*sides: tuple[psycopg.Connection, str]) -> None:
    shared = len(sides) == 2 and _cluster(sides[0][0]) == _cluster(sides[1][0])
    if shared:  # one cluster: both sides' needs come out of one pool, checked once
        sides = ((sides[0][0], "hub and member (one cluster)"),)
    found = [p for conn, where in sides for p in problems(conn, where, NEEDED * (1 + shared))]
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
        # ALWAYS: they fire for the rows the hub's subscriptions apply, which is where a
        # member's rows are checked, merged, and a member's TRUNCATE refused.
        for trigger in HUB_TRIGGERS:
            conn.execute(sql.SQL("ALTER TABLE heal.shared_patterns ENABLE ALWAYS TRIGGER {}"
                                 ).format(sql.Identifier(trigger)))  # fmt: skip
        if not _publication_exists(conn, HUB_PUBLICATION):
            conn.execute(sql.SQL(PUBLISH).format(sql.Identifier(HUB_PUBLICATION),
                                                 sql.Identifier("network_patterns")))  # fmt: skip
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
    member_dsn: str,
    hub_dsn: str,
    member_conninfo: str | None = None,
    hub_conninfo: str | None = None,
) -> JoinReport:
    """Make `member` a member of `hub_conn`'s hub, replicating both ways.

    `member_conninfo` is how the hub's server reaches the member, `hub_conninfo` how
    the member's server reaches the hub; by default the CLI's own connections
    (`member_dsn`, `hub_dsn`) as the role :data:`REPLICATOR`. Each is stored in a
    subscription on the other side, whose superusers can read it."""
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
    if _leftovers(member, me["member_id"]):  # of a join that could not undo itself
        _undo(member, hub_conn, me["member_id"], LeaveReport(me["member_id"]))
    # A new membership, a new random id: a database copied from a member (a template,
    # a restored dump) never speaks with another's.
    with member.transaction():
        member_id = _scalar(member, """UPDATE heal.network_member
                                          SET member_id = pg_catalog.gen_random_uuid(),
                                              hub_id = %s
                                       RETURNING member_id::text""",
                            (the_hub["member_id"],))  # fmt: skip
        member.execute("DELETE FROM heal.shared_patterns")
        member.execute("DELETE FROM heal.network_patterns")
        shared = _scalar(member, "SELECT heal.share_patterns()")
        if not _publication_exists(member, MEMBER_PUBLICATION):
            member.execute(sql.SQL(PUBLISH).format(sql.Identifier(MEMBER_PUBLICATION),
                                                   sql.Identifier("shared_patterns")))  # fmt: skip
    to_member = _replication_conninfo(member, member_dsn, member_conninfo, "shared_patterns",
                                      "--member-conninfo")  # fmt: skip
    to_hub = _replication_conninfo(hub_conn, hub_dsn, hub_conninfo, "network_patterns",
                                   "--hub-conninfo")  # fmt: skip
    inbound, outbound = hub_subscription(member_id), member_subscription(member_id)
    try:
        hub_conn.execute("INSERT INTO heal.network_members (member_id, subscription) "
                         "VALUES (%s, %s)", (member_id, inbound))  # fmt: skip
        _subscribe(
            hub_conn,
            member,
            inbound,
            to_member,
            MEMBER_PUBLICATION,
            "the hub's server could not reach the member with --member-conninfo",
        )
        _subscribe(
            member,
            hub_conn,
            outbound,
            to_hub,
            HUB_PUBLICATION,
            "the member's server could not reach the hub with --hub-conninfo",
        )
        _streaming(hub_conn, member, inbound, "the hub's subscription to the member",
                   "--member-conninfo")  # fmt: skip
        _streaming(member, hub_conn, outbound, "the member's subscription to the hub",
                   "--hub-conninfo")  # fmt: skip
        member.execute("UPDATE heal.network_member SET joined_at = pg_catalog.now()")
    except BaseException as exc:
        undone = _undo(member, hub_conn, member_id, LeaveReport(member_id))
        if undone.left_behind and isinstance(exc, Exception):
            raise NetworkError(f"{exc}; undoing the join left: "
                               f"{'; '.join(undone.left_behind)}") from exc  # fmt: skip
        raise
    return JoinReport(member_id, shared, {"hub": inbound, "member": outbound})


#: The role subscriptions log in as: it may replicate and read the one table
#: published, nothing else. Never a superuser: each side stores the other's conninfo
#: in pg_subscription, which the other side's superusers read.
REPLICATOR = "pgheal_replicator"


def _replication_conninfo(
    publisher: psycopg.Connection, dsn: str, given: str | None, table: str, option: str
) -> str:
    """How the other side's server logs in to `publisher`: the conninfo `given` for
    `option`, whose user must not be a superuser; else the CLI's own `dsn` as the role
    :data:`REPLICATOR`, without its password. The role is made here when missing,
    and may read heal.`table`."""
    with publisher.transaction():
        if not _scalar(publisher, "SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = %s",
                       (REPLICATOR,)):  # fmt: skip
            publisher.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION").format(
                sql.Identifier(REPLICATOR)))  # fmt: skip
        publisher.execute(sql.SQL("GRANT SELECT ON heal.{} TO {}").format(
            sql.Identifier(table), sql.Identifier(REPLICATOR)))  # fmt: skip
    if given is None:
        info = conninfo_to_dict(dsn)
        info.pop("password", None)
        info["user"] = REPLICATOR
        return make_conninfo(**info)
    user = conninfo_to_dict(given).get("user")
    if not user:
        raise NetworkError(
            f"{option} must name its user (user=...): a role with LOGIN REPLICATION and "
            f"SELECT on heal.{table}, such as {REPLICATOR}"
        )
    if _scalar(publisher, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = %s", (user,)):
        raise NetworkError(
            f"{option} logs in as {user}, a superuser: the other side would store a "
            f"superuser's login in pg_subscription. Use a role with LOGIN REPLICATION and "
            f"SELECT on heal.{table} ({REPLICATOR}, which pgheal made), or leave {option} out"
        )
    return given


#: A publication of one of pgheal's tables. TRUNCATE is not published (and refused on
#: those tables): a member's would empty the hub's table of every member's rows.
PUBLISH = "CREATE PUBLICATION {} FOR TABLE heal.{} WITH (publish = 'insert, update, delete')"

#: How long a new subscription may take to stream (its worker starts within
#: wal_retrieve_retry_interval, then copies one small table).
STREAMING_SECONDS = 60


def _subscribe(
    subscriber: psycopg.Connection,
    publisher: psycopg.Connection,
    name: str,
    conninfo: str,
    publication: str,
    unreachable: str,
) -> None:
    publisher.execute("SELECT pg_catalog.pg_create_logical_replication_slot(%s, 'pgoutput')",
                      (name,))  # fmt: skip
    statement = sql.SQL(
        "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} "
        "WITH (create_slot = false, slot_name = {})"
    ).format(sql.Identifier(name), sql.Literal(make_conninfo(conninfo)),
             sql.Identifier(publication), sql.Literal(name))  # fmt: skip
    try:
        subscriber.execute(statement)
    except psycopg.OperationalError as exc:  # the server's own connection failed
        raise NetworkError(f"{unreachable} ({_safe(conninfo)}): "
                           f"{exc.diag.message_primary or exc}") from None  # fmt: skip


def _streaming(
    subscriber: psycopg.Connection,
    publisher: psycopg.Connection,
    name: str,
    what: str,
    option: str,
) -> None:
    """Wait until subscription `name` streams from the slot it was given and its table's
    first copy is done: CREATE SUBSCRIPTION itself succeeds against a wrong server
    that has no such publication, or when no worker is free."""
    tables = _scalar(subscriber, """SELECT count(*) FROM pg_catalog.pg_subscription_rel r
                                      JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid
                                     WHERE s.subname = %s""", (name,))  # fmt: skip
    if not tables:  # the table list is read when the subscription is made
        raise NetworkError(f"{what} ({name}) found no table to copy: does {option} reach "
                           "the right database?")  # fmt: skip
    for _ in range(STREAMING_SECONDS * 10):
        active = _scalar(publisher, "SELECT active FROM pg_catalog.pg_replication_slots "
                                    "WHERE slot_name = %s", (name,))  # fmt: skip
        copying = _scalar(subscriber, """SELECT count(*) FROM pg_catalog.pg_subscription_rel r
                                           JOIN pg_catalog.pg_subscription s ON s.oid = r.srsubid
                                          WHERE s.subname = %s AND r.srsubstate <> 'r'""",
                          (name,))  # fmt: skip
        if active and not copying:
            return
        time.sleep(0.1)
    raise NetworkError(
        f"{what} ({name}) did not start streaming in {STREAMING_SECONDS} s: see the "
        f"subscriber's server log (a publisher unreachable through {option}, or no free "
        "logical replication worker)"
    )


def _safe(conninfo: str) -> str:
    """`conninfo` without its password, for a message."""
    try:
        info = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "the connection string given"
    info.pop("password", None)
    return make_conninfo(**info)


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
        return _close_hub(member, me["member_id"])
    member_id = me["member_id"]
    if hub_conn is not None and me["hub_id"] is not None:
        the_hub = _me(hub_conn)
        if the_hub["member_id"] != me["hub_id"]:
            raise NetworkError(f"--hub is not this member's hub (that is hub {me['hub_id']}; "
                               f"--hub reaches {the_hub['member_id']})")  # fmt: skip
    return _undo(member, hub_conn, member_id, LeaveReport(member_id))


def _close_hub(conn: psycopg.Connection, hub_id: str) -> LeaveReport:
    """A hub with no members left stops being one: its publication and merge go."""
    members = _scalar(conn, "SELECT count(*) FROM heal.network_members")
    if members:
        raise NetworkError(
            f"this database is the hub of {members} members: run pgheal network leave on "
            "each (or here, --member ID for one gone for good) first"
        )
    report = LeaveReport(hub_id)
    with conn.transaction():
        if _publication_exists(conn, HUB_PUBLICATION):
            conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(HUB_PUBLICATION)))
            report.removed.append(f"hub: publication {HUB_PUBLICATION}")
        conn.execute("ALTER TABLE heal.shared_patterns DISABLE TRIGGER shared_patterns_check")
        conn.execute("ALTER TABLE heal.shared_patterns DISABLE TRIGGER shared_patterns_merge")
        conn.execute("ALTER TABLE heal.shared_patterns ENABLE TRIGGER shared_patterns_no_truncate")
        conn.execute("DELETE FROM heal.network_patterns")
        conn.execute("UPDATE heal.network_member SET is_hub = false, hub_since = NULL")
    report.removed.append("hub: its merge and merged patterns; it is a hub no more")
    return report


def forget(hub_conn: psycopg.Connection, member_id: str) -> LeaveReport:
    """On a hub, remove member `member_id` without its database (gone, or unreachable):
    the hub's subscription to it, the member's slot here, its rows and its merged counts."""
    if not _me(hub_conn)["is_hub"]:
        raise NetworkError("--member is for a hub: this database is not one")
    report = LeaveReport(member_id)
    known = _scalar(hub_conn, "SELECT count(*) FROM heal.network_members WHERE member_id::text "
                              "= %s", (member_id,))  # fmt: skip
    if not known and not _leftovers(hub_conn, member_id):
        raise NetworkError(f"member {member_id} is not a member of this hub "
                           "(see pgheal network status)")  # fmt: skip
    _step(report, "hub", lambda: _unsubscribe(hub_conn, None, hub_subscription(member_id),
                                              "hub", report))  # fmt: skip
    _step(report, "hub", lambda: _drop_slot(hub_conn, member_subscription(member_id), "hub",
                                            report))  # fmt: skip
    _step(report, "hub", lambda: _forget_rows(hub_conn, member_id, report))
    report.left_behind.append(
        f"member: its subscription {member_subscription(member_id)} and slot "
        f"{hub_subscription(member_id)}, if its database comes back (pgheal network leave "
        "--dsn MEMBER there)"
    )
    return report


def _leftovers(conn: psycopg.Connection, member_id: str) -> bool:
    """Whether anything of membership `member_id` exists on the server of `conn`."""
    names = [hub_subscription(member_id), member_subscription(member_id)]
    return bool(_scalar(conn, """SELECT (SELECT count(*) FROM pg_catalog.pg_subscription
                                          WHERE subname = ANY(%s))
                                      + (SELECT count(*) FROM pg_catalog.pg_replication_slots
                                          WHERE slot_name = ANY(%s))""",
                        (names, names)))  # fmt: skip


def _step(report: LeaveReport, where: str, work: Callable[[], object]) -> None:
    """One part of undoing a membership: a failure is told, and the other parts go on."""
    try:
        work()
    except psycopg.Error as exc:
        report.left_behind.append(f"{where}: {str(exc).strip()}")


def _forget_rows(hub_conn: psycopg.Connection, member_id: str, report: LeaveReport) -> None:
    with hub_conn.transaction():
        hub_conn.execute("DELETE FROM heal.shared_patterns WHERE member_id::text = %s",
                         (member_id,))  # fmt: skip
        if hub_conn.execute("DELETE FROM heal.network_members WHERE member_id::text = %s",
                            (member_id,)).rowcount:  # fmt: skip
            report.removed.append(f"hub: member {member_id} and its patterns")


def _undo(
    member: psycopg.Connection,
    hub_conn: psycopg.Connection | None,
    member_id: str,
    report: LeaveReport,
) -> LeaveReport:
    """Remove whatever of a membership exists, each part on its own (one that fails is
    named in ``left_behind``, the others go on): what a failed join made, or a whole
    membership."""
    inbound, outbound = hub_subscription(member_id), member_subscription(member_id)
    _step(report, "member", lambda: _unsubscribe(member, hub_conn, outbound, "member", report))
    if hub_conn is not None:
        _step(report, "hub", lambda: _unsubscribe(hub_conn, member, inbound, "hub", report))
        _step(report, "hub", lambda: _forget_rows(hub_conn, member_id, report))
    else:
        _step(report, "member", lambda: _drop_slot(member, inbound, "member", report))
        report.left_behind.append(
            f"hub: subscription {inbound} and slot {outbound} (on the hub: pgheal network "
            f"leave --dsn HUB --member {member_id})"
        )

    def publication() -> None:
        if _publication_exists(member, MEMBER_PUBLICATION):
            member.execute(sql.SQL("DROP PUBLICATION {}").format(
                sql.Identifier(MEMBER_PUBLICATION)))  # fmt: skip
            report.removed.append(f"member: publication {MEMBER_PUBLICATION}")

    def forget_fleet() -> None:
        with member.transaction():
            member.execute("DELETE FROM heal.network_patterns")
            member.execute("UPDATE heal.network_member SET joined_at = NULL, hub_id = NULL")

    _step(report, "member", publication)
    _step(report, "member", forget_fleet)
    return report


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
        row = cur.execute("SELECT member_id::text, is_hub, joined_at, hub_id::text "
                          "FROM heal.network_member").fetchone()  # fmt: skip
    if row is None:
        raise NetworkError("heal.network_member is empty: run pgheal install again")
    return row


def _cluster(conn: psycopg.Connection) -> tuple:
    """Which server `conn` reaches: its system identifier and port."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT (pg_catalog.pg_control_system()).system_identifier, "
                               "current_setting('port')").fetchone()  # fmt: skip
    except psycopg.errors.InsufficientPrivilege:
        return (id(conn),)  # not a superuser: problems() says so
    return tuple(row or ())


def _publication_exists(conn: psycopg.Connection, name: str) -> bool:
    return bool(_scalar(conn, "SELECT count(*) FROM pg_catalog.pg_publication WHERE pubname = %s",
                        (name,)))  # fmt: skip


def _scalar(conn: psycopg.Connection, query: str, params: tuple | None = None) -> Any:
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None
