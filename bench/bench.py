"""``make bench``: pgheal against plain psql on the same work, in one run.

Every figure is the median of several rounds; a round runs each variant of a
comparison once, in turn, each in a fresh database cloned from one with pgheal
installed, and a ratio is the median of the rounds' ratios (a round's runs share
the machine's load of the moment, so this is steadier than a ratio of medians):
- ``CALL heal.migrate`` vs ``psql -1 -f`` on a clean 1,000-statement migration;
- a migration needing three heals, and one needing five (predicted and reactive),
  against the same migration with its dependencies present;
- ``heal.plan`` on the 1,000-statement migration;
- the predictive DDL trigger on vs off, on 2,000 DDL statements through ``psql -1 -f``,
  and the floor of its design: the same trigger calling PL/Python that does nothing;
- the extension catalog build, for every extension the server has;
- the memory ``heal.migrate`` adds to its backend (VmHWM) for seed scripts of 1,000 to
  1,000,000 INSERT statements, against the size of the script.

The cluster lives in memory (``/dev/shm``) when there is room: on a disk filesystem,
creating the files of thousands of tables right after dropping the thousands of the
run before costs the kernel more than PostgreSQL, and varies from run to run; the
figures would be about the filesystem.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgheal import deploy, serverdeps
from pgheal.cluster import Cluster

RUNS = 7
#: Where the cluster goes when it has this much room: see the module's docstring.
MEMORY = Path("/dev/shm")
MEMORY_NEEDED = 2 << 30
#: DDL timings vary most from run to run on a small machine, and their target is tight.
DDL_ROUNDS = 15
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


def ddl_workload(statements: int = 2000) -> str:
    """DDL only, as migration tools send it through psql -f: tables, indexes, functions."""
    out = []
    i = 0
    while len(out) < statements:
        out += [
            f"CREATE TABLE d{i} (id bigint PRIMARY KEY, label text NOT NULL, at timestamptz);",
            f"CREATE INDEX d{i}_label_idx ON d{i} (label);",
            f"CREATE FUNCTION d{i}_count() RETURNS bigint LANGUAGE sql "
            f"AS $$ SELECT count(*) FROM d{i} $$;",
        ]
        i += 1
    return "\n".join(out[:statements]) + "\n"


THREE_HEALS = """CREATE TABLE app.users (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email citext NOT NULL UNIQUE);
"""
FIVE_HEALS = """CREATE TABLE app.users (
    id uuid PRIMARY KEY DEFAULT uuid_generate_v4(),
    email citext NOT NULL UNIQUE,
    name text NOT NULL,
    attributes hstore);
CREATE INDEX users_name_trgm ON app.users USING gin (name gin_trgm_ops);
"""
PRESENT = """CREATE SCHEMA app;
CREATE SCHEMA extensions;
CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions;
CREATE EXTENSION citext WITH SCHEMA extensions;
CREATE EXTENSION hstore WITH SCHEMA extensions;
CREATE EXTENSION pg_trgm WITH SCHEMA extensions;
DO $$ BEGIN
    EXECUTE format('ALTER DATABASE %I SET search_path = "$user", public, extensions',
                   current_database());
END $$;
"""
REACTIVE = "UPDATE heal.settings SET value = 'off' WHERE name = 'predict';"
TRIGGER_OFF = "UPDATE heal.settings SET value = 'off' WHERE name = 'predictive';"
#: The floor of the trigger's design: its PL/pgSQL wrapper calling PL/Python that does
#: nothing (in a throwaway database).
PYTHON_FLOOR = """CREATE OR REPLACE FUNCTION heal.heal_ddl(query text, role name, search_path text)
RETURNS text LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'return None';"""

Runner = Callable[[str, Path], float]


@dataclass
class Timing:
    seconds: float  #: the median run
    ratio: float  #: the median, over rounds, of a run's time over the first variant's


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
        self.admin.execute(f"DROP DATABASE {dsn.split('/')[3].split('?')[0]}")

    @staticmethod
    def timed(command: list[str], stdin: str | None = None) -> float:
        started = time.perf_counter()
        subprocess.run(command, input=stdin, check=True, capture_output=True, text=True)
        return time.perf_counter() - started

    def psql_file(self, dsn: str, path: Path) -> float:
        return self.timed(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(path), dsn])

    def psql_with(self, query: str) -> Runner:
        def run(dsn: str, path: Path) -> float:
            return self.timed(
                ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", f"m={path.read_text()}", dsn],
                stdin=query,
            )

        return run

    def compare(
        self, path: Path, variants: list[tuple[str, Runner]], rounds: int = RUNS
    ) -> list[Timing]:
        """Each (setup SQL, runner), once a round, fresh database each."""
        times: list[list[float]] = [[] for _ in variants]
        for _ in range(rounds):
            for (setup, runner), bucket in zip(variants, times, strict=True):
                dsn = self.fresh_db(setup)
                bucket.append(runner(dsn, path))
                self.drop(dsn)
        return [
            Timing(
                statistics.median(t),
                statistics.median(a / b for a, b in zip(t, times[0], strict=True)),
            )
            for t in times
        ]

    def catalog_build(self) -> tuple[float, int, int]:
        dsn = self.fresh_db()
        builds = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            for _ in range(RUNS):
                conn.execute("SELECT heal.refresh_extension_catalog(true)")
                builds.append(conn.execute(
                    "SELECT duration_ms, extensions, objects FROM heal.extension_catalog_builds "
                    "ORDER BY id DESC LIMIT 1"
                ).fetchone())  # fmt: skip
        self.drop(dsn)
        return statistics.median(float(b[0]) for b in builds), builds[0][1], builds[0][2]

    def memory(self, sql: str) -> float:
        """What one ``heal.migrate`` of `sql` adds to its backend's peak memory, in MB, in a
        backend that has loaded pgheal and its parser already."""
        dsn = self.fresh_db()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CALL heal.migrate('SELECT 1')")
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            before = peak_mb(pid)
            conn.execute("CALL heal.migrate(%s)", (sql,))
            grown = peak_mb(pid) - before
        self.drop(dsn)
        return grown


def failing_script(errors: int) -> str:
    """What an application failing on five missing functions sends: `errors` statements."""
    return "".join(f"SELECT missing_{i % 5}({i});\n" for i in range(errors))


class ScanBench:
    """``CALL heal.scan()`` on the server log: the time of a scan with nothing new, and
    of scans taking in this database's errors and passing over another database's."""

    def __init__(self, bench: Bench, tmp: Path) -> None:
        self.bench, self.tmp = bench, tmp
        self.here = bench.fresh_db(
            "UPDATE heal.settings SET value = '10000000' WHERE name = 'scan_max_events';"
            "UPDATE heal.settings SET value = '1073741824' WHERE name = 'scan_max_bytes';"
        )
        bench.admin.execute("CREATE DATABASE bench_other TEMPLATE template0")
        self.other = bench.cluster.dsn("bench_other")

    def fail(self, dsn: str, errors: int) -> None:
        """Log `errors` application errors in `dsn`'s database, through psql."""
        path = self.tmp / f"fail_{errors}.sql"
        if not path.exists():
            path.write_text(failing_script(errors))
        subprocess.run(["psql", "-X", "-q", "-f", str(path), dsn], check=True,
                       capture_output=True)  # fmt: skip

    def scan(self) -> dict:
        """One scan, after the logger has written what was logged (it is a process of its
        own): the figures heal.scans recorded."""
        time.sleep(0.5)
        with psycopg.connect(self.here, autocommit=True) as conn:
            conn.execute("CALL heal.scan()")
            row = conn.execute(
                "SELECT duration_ms, lines_read, events FROM heal.scans ORDER BY id DESC LIMIT 1"
            ).fetchone()
        return {"ms": float(row[0]), "lines": row[1], "events": row[2]}

    def run(self, sizes: tuple[int, ...]) -> None:
        with psycopg.connect(self.here, autocommit=True) as conn:
            conn.execute("SELECT heal.skip_log_backlog()")
        idle = statistics.median(self.scan()["ms"] for _ in range(RUNS))
        print("CALL heal.scan() on the server log (targets: >= 100,000 lines/s, >= 20,000 of "
              "this database's errors/s, another database's lines <= 1/10 the cost):")  # fmt: skip
        print(f"  no new lines{idle:23.1f} ms")
        for errors in sizes:
            self.fail(self.here, errors)
            mine = self.scan()
            self.fail(self.other, errors)
            theirs = self.scan()
            per_mine = (mine["ms"] - idle) / max(mine["lines"], 1)
            per_theirs = (theirs["ms"] - idle) / max(theirs["lines"], 1)
            print(f"  {errors:>7,} errors here    {mine['ms']:9.1f} ms  "
                  f"{mine['events'] / mine['ms'] * 1000:9,.0f} errors/s  "
                  f"{mine['lines'] / mine['ms'] * 1000:9,.0f} lines/s")  # fmt: skip
            print(
                f"  {errors:>7,} lines elsewhere {theirs['ms']:9.1f} ms  "
                f"{theirs['events']:>9} taken in  "
                f"{theirs['lines'] / theirs['ms'] * 1000:9,.0f} lines/s  "
                f"cost per line {per_theirs / per_mine if per_mine > 0 else 0:.2f} of here's"
            )
        self.bench.drop(self.other)
        self.bench.drop(self.here)


def seed_script(rows: int) -> str:
    """A seed file as a dump writes one: a table and one INSERT a row."""
    return "CREATE TABLE seed (a int, b text);\n" + "".join(
        f"INSERT INTO seed VALUES ({i}, 'row {i} of the seed data');\n" for i in range(rows)
    )


def peak_mb(pid: int) -> float:
    """A backend's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        return int(next(x for x in status if x.startswith("VmHWM:")).split()[1]) / 1024


def line(label: str, timing: Timing, base: Timing | None = None, target: str = "") -> str:
    """One figure: the median time, and against `base` the difference and the ratio."""
    text = f"  {label:<26}{timing.seconds * 1000:9.1f} ms"
    if base is not None:
        text += f"   {(timing.seconds - base.seconds) * 1000:+.1f} ms, ratio {timing.ratio:.2f}"
    return text + target


def clean_and_heals(bench: Bench, files: dict[str, Path]) -> None:
    migrate = bench.psql_with("CALL heal.migrate(:'m');\n")
    plan = bench.psql_with("SELECT count(*) FROM heal.plan(:'m');\n")
    psql, heal, plan_ = bench.compare(
        files["clean"], [(TRIGGER_OFF, bench.psql_file), ("", migrate), ("", plan)]
    )
    print(f"1,000-statement clean migration (median of {RUNS} rounds):")
    print(line("psql -1 -f", psql))
    print(line("CALL heal.migrate", heal, psql, "  (target <= 1.5)"))
    print(line("SELECT FROM heal.plan", plan_, psql))

    present, healing = bench.compare(files["three"], [(PRESENT, migrate), ("", migrate)])
    print("migration needing three heals (schema, uuid-ossp, citext):")
    print(line("dependencies present", present))
    print(line("healed in the call", healing, present))

    present, predicted, reactive = bench.compare(
        files["five"], [(PRESENT, migrate), ("", migrate), (REACTIVE, migrate)]
    )
    print("migration needing five heals (schema, uuid-ossp, citext, hstore, pg_trgm):")
    print(line("dependencies present", present))
    print(line("predicted heals", predicted, present))
    print(line("reactive heals", reactive, present))


def trigger(bench: Bench, files: dict[str, Path]) -> None:
    off, floor, on = bench.compare(
        files["ddl"],
        [(TRIGGER_OFF, bench.psql_file), (PYTHON_FLOOR, bench.psql_file), ("", bench.psql_file)],
        DDL_ROUNDS,
    )
    print(f"2,000 DDL statements through psql -1 -f, predictive trigger off vs on "
          f"(median of {DDL_ROUNDS} rounds):")  # fmt: skip
    print(line("trigger off", off))
    print(line("PL/Python doing nothing", floor, off))
    print(line("trigger on", on, off, "  (target <= 1.10)"))


def catalog(bench: Bench, files: dict[str, Path]) -> None:
    build_ms, extensions, objects = bench.catalog_build()
    print(
        f"extension catalog: {extensions} extensions, {objects} objects, "
        f"built in {build_ms:.0f} ms (median of {RUNS}, server side)"
    )


def memory(bench: Bench, files: dict[str, Path]) -> None:
    print("backend memory of CALL heal.migrate, seed scripts (target <= 3 x script + 64 MB):")
    for rows in (1_000, 10_000, 100_000, 1_000_000):
        sql = seed_script(rows)
        size = len(sql.encode()) / 2**20
        grown = bench.memory(sql)
        print(f"  {rows:>9,} statements {size:7.1f} MB script   +{grown:6.1f} MB peak"
              f"   (target {3 * size + 64:.0f} MB)")  # fmt: skip


def scan(bench: Bench, files: dict[str, Path]) -> None:
    ScanBench(bench, files["clean"].parent).run((2_000, 20_000, 100_000))


#: The sections of ``make bench``, in the order they run; ``bench.py NAME ...`` runs some.
SECTIONS: dict[str, Callable[[Bench, dict[str, Path]], None]] = {
    "migrate": clean_and_heals, "trigger": trigger, "scan": scan, "catalog": catalog,
    "memory": memory,
}  # fmt: skip


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a not in SECTIONS]
    if unknown:
        print(f"bench: no section {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
        return 2
    python_path, _ = serverdeps.install()
    in_memory = MEMORY.is_dir() and shutil.disk_usage(MEMORY).free >= MEMORY_NEEDED
    print(f"cluster in {MEMORY if in_memory else 'the temporary directory (on disk)'}")
    with (
        Cluster(directory=MEMORY if in_memory else None) as cluster,
        tempfile.TemporaryDirectory() as tmp,
    ):
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(cluster.dsn(TEMPLATE), autocommit=True) as conn:
            deploy.install(conn, python_path)
        bench = Bench(cluster)
        files = {}
        for name, text in (("clean", clean_migration()), ("three", THREE_HEALS),
                           ("five", FIVE_HEALS), ("ddl", ddl_workload())):  # fmt: skip
            files[name] = Path(tmp, f"{name}.sql")
            files[name].write_text(text)
        for name, section in SECTIONS.items():
            if not argv or name in argv:
                section(bench, files)
        bench.admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
