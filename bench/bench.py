"""``make bench``: heal.migrate against plain psql on the same work, in one run.

Prints two figures, each the median of several alternating runs in fresh databases:
- the time ratio of ``CALL heal.migrate`` to ``psql -1 -f`` on a clean migration of
  1,000 statements (no heals needed): the cost of running through pgheal;
- the extra time a migration that needs three heals takes over the same migration
  with its dependencies already present.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from pgheal import deploy, serverdeps
from pgheal.cluster import Cluster

RUNS = 7
TEMPLATE = "bench_template"


def clean_migration(statements: int = 1000) -> str:
    """A realistic mix: tables, indexes, comments, a view, inserts."""
    out = []
    i = 0
    while len(out) < statements:
        out += [
            f"CREATE TABLE t{i} (id bigserial PRIMARY KEY, name text NOT NULL, "
            f"created_at timestamptz NOT NULL DEFAULT now(), score numeric(10, 2));",
            f"CREATE INDEX t{i}_name_idx ON t{i} (name);",
            f"COMMENT ON TABLE t{i} IS 'table number {i}';",
            f"INSERT INTO t{i} (name, score) VALUES ('a', 1.5), ('b', 2.5);",
            f"CREATE VIEW v{i} AS SELECT name, score FROM t{i} WHERE score > 1;",
        ]
        i += 1
    return "\n".join(out[:statements]) + "\n"


HEALS = """CREATE TABLE app.users (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email citext NOT NULL UNIQUE);
"""
PRESENT = """CREATE SCHEMA app;
CREATE SCHEMA extensions;
CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions;
CREATE EXTENSION citext WITH SCHEMA extensions;
DO $$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, extensions',
                   current_database());
END $$;
"""


class Bench:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.admin = psycopg.connect(cluster.dsn(), autocommit=True)
        self.counter = 0

    def fresh_db(self, setup: str = "") -> str:
        self.counter += 1
        name = f"bench_{self.counter}"
        self.admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        dsn = self.cluster.dsn(name)
        if setup:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(setup)
        return dsn

    def drop(self, dsn: str) -> None:
        name = dsn.split("/")[3].split("?")[0]
        self.admin.execute(f"DROP DATABASE {name}")

    @staticmethod
    def timed(command: list[str], stdin: str | None = None) -> float:
        started = time.perf_counter()
        subprocess.run(command, input=stdin, check=True, capture_output=True, text=True)
        return time.perf_counter() - started

    def psql_file(self, dsn: str, path: Path) -> float:
        return self.timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(path), dsn])

    def heal_migrate(self, dsn: str, path: Path) -> float:
        return self.timed(
            ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"m={path.read_text()}", dsn],
            stdin="CALL heal.migrate(:'m');\n",
        )

    def pair(self, path: Path, first: tuple, second: tuple) -> tuple[float, float]:
        """Median times of two (setup SQL, runner) ways, alternating, fresh database each."""
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(RUNS):
            for (setup, runner), bucket in zip((first, second), times, strict=True):
                dsn = self.fresh_db(setup)
                bucket.append(runner(dsn, path))
                self.drop(dsn)
        return statistics.median(times[0]), statistics.median(times[1])


def main() -> int:
    python_path, _ = serverdeps.install()
    with Cluster() as cluster, tempfile.TemporaryDirectory() as tmp:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(cluster.dsn(TEMPLATE), autocommit=True) as conn:
            deploy.install(conn, python_path)
        bench = Bench(cluster)
        clean = Path(tmp, "clean.sql")
        clean.write_text(clean_migration())
        heals = Path(tmp, "heals.sql")
        heals.write_text(HEALS)

        psql_s, heal_s = bench.pair(clean, ("", bench.psql_file), ("", bench.heal_migrate))
        print(f"1,000-statement clean migration (median of {RUNS}):")
        print(f"  psql -1 -f              {psql_s * 1000:8.1f} ms")
        print(f"  CALL heal.migrate       {heal_s * 1000:8.1f} ms")
        print(f"  ratio                   {heal_s / psql_s:8.2f}  (target <= 1.5)")

        present_s, healing_s = bench.pair(
            heals, (PRESENT, bench.heal_migrate), ("", bench.heal_migrate)
        )
        print(f"migration needing three heals (schema, uuid-ossp, citext), median of {RUNS}:")
        print(f"  dependencies present    {present_s * 1000:8.1f} ms")
        print(f"  healed in the call      {healing_s * 1000:8.1f} ms")
        print(f"  extra time for heals    {(healing_s - present_s) * 1000:8.1f} ms")
        bench.admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
