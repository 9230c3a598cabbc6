"""``make bench-network``: what the learning network costs as members are added.

One hub and N members (default 8), each its own throwaway cluster with
``wal_level = logical``. For 1, 2, 4, ... N members it reports the time a join takes,
how long a pattern learned on one member takes to reach every member (hub merge
included, median of several patterns), and what the hub holds: WAL senders,
replication slots, apply workers and their resident memory; then the time to leave.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "installer"))

from pgheal import deploy, network, serverdeps
from pgheal.cluster import Cluster

#: Room for 8 members and more on the hub; each member needs little.
HUB_SETTINGS = """max_wal_senders = 40
max_replication_slots = 40
max_logical_replication_workers = 40
max_worker_processes = 48
"""
PATTERNS = 5


def connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True)


def rss_mb(conn: psycopg.Connection, backend_type: str) -> tuple[int, float]:
    """How many backends of that type run on the server of `conn`, and their memory."""
    pids = [r[0] for r in conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = %s", (backend_type,))]  # fmt: skip
    total = 0.0
    for pid in pids:
        try:
            for row in Path(f"/proc/{pid}/status").read_text().splitlines():
                if row.startswith("VmRSS:"):
                    total += int(row.split()[1]) / 1024
        except OSError:
            continue
    return len(pids), total


def propagate(members: list[psycopg.Connection], n: int) -> float:
    """Seconds from a pattern shared by member 0 until every member has it merged."""
    source = members[0]
    name = f"bench_fn_{n}_{time.monotonic_ns()}"
    started = time.monotonic()
    source.execute(
        """INSERT INTO heal.shared_patterns (member_id, kind, object_kind, object, extension,
                  applied, held)
           SELECT member_id, 'fix', 'function', %s, 'bench', 1, 1 FROM heal.network_member""",
        (f"function {name}()",),
    )
    for conn in members:
        while not conn.execute("SELECT count(*) FROM heal.network_patterns WHERE object = %s",
                               (f"function {name}()",)).fetchone()[0]:  # fmt: skip
            time.sleep(0.005)
    return time.monotonic() - started


def main(argv: list[str]) -> int:
    size = int(argv[0]) if argv else 8
    clusters: list[Cluster] = []
    try:
        hub_cluster = Cluster(pg_cron=False, csvlog=False, logical=True, extra=HUB_SETTINGS)
        clusters.append(hub_cluster.start())
        for _ in range(size):
            clusters.append(Cluster(pg_cron=False, csvlog=False, logical=True).start())
        for cluster in clusters:
            with connect(cluster.dsn()) as conn:
                deploy.install(conn, serverdeps.default_path())
        hub = connect(hub_cluster.dsn())
        network.hub(hub)
        members: list[psycopg.Connection] = []
        print(f"learning network: 1 hub, up to {size} members, each its own cluster")
        print(f"  {'members':>7} {'join s':>7} {'spread s':>9} {'hub walsenders':>14} "
              f"{'slots':>5} {'apply workers':>13} {'hub workers MB':>14}")  # fmt: skip
        report = {1, 2, 4, size} | set(range(8, size + 1, 8))
        for i, cluster in enumerate(clusters[1:], 1):
            conn = connect(cluster.dsn())
            started = time.monotonic()
            network.join(conn, hub, cluster.dsn(), hub_cluster.dsn())
            joined = time.monotonic() - started
            members.append(conn)
            for each in members:  # its first copy done, every subscription streaming
                while not each.execute("SELECT bool_and(running) FROM heal.network").fetchone()[0]:
                    time.sleep(0.05)
            while hub.execute("SELECT count(*) FILTER (WHERE running) FROM heal.network"
                              ).fetchone()[0] < i:  # fmt: skip
                time.sleep(0.05)
            if i not in report:
                continue
            spread = statistics.median(propagate(members, n) for n in range(PATTERNS))
            senders, _ = rss_mb(hub, "walsender")
            workers, memory = rss_mb(hub, "logical replication worker")
            slots = hub.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0]
            print(f"  {i:>7} {joined:>7.2f} {spread:>9.3f} {senders:>14} {slots:>5} "
                  f"{workers:>13} {memory:>14.1f}")  # fmt: skip
        started = time.monotonic()
        for conn in members:
            network.leave(conn, hub)
        print(
            f"  all {size} members left in {time.monotonic() - started:.2f} s; slots left on "
            f"the hub: {hub.execute('SELECT count(*) FROM pg_replication_slots').fetchone()[0]}"
        )
    finally:
        for cluster in clusters:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
