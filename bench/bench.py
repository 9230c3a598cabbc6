"""``make bench``: pgheal against plain psql on the same work, in one run.

Every figure is the median of several rounds; a round runs each variant of a
comparison once, in turn, each in a fresh database cloned from one with pgheal
installed, and a ratio is the median of the rounds' ratios (a round's runs share
the machine's load of the moment, so this is steadier than a ratio of medians):
- ``CALL heal.migrate`` vs ``psql -1 -f`` on a clean 1,000-statement migration;
- a migration needing three heals, and one needing five (predicted and reactive),
  against the same migration with its dependencies present;
- ``heal.plan`` on the 1,000-statement migration;
- ``pgheal migrate`` against the real ``dbmate up`` on the same 200-file folder, and the
  floor of a runner in Python: psycopg applying each file, nothing else;
- seed scripts of 1,000 to 1,000,000 statements: ``heal.migrate`` against the in-server
  floor (a PL/pgSQL loop executing each statement), the floor of its design (the same
  loop, a subtransaction a statement) and ``psql -1 -f``, with the memory
  ``heal.migrate`` adds to its backend (VmHWM) against the size of the script;
- the predictive DDL trigger on vs off, on 2,000 DDL statements through ``psql -1 -f``
  in three workloads (public, schema-qualified, an application schema), and the floor
  of its design: the same trigger calling PL/Python that finds nothing to do, with and
  without a ``SET search_path`` clause;
- ``CALL heal.scan()`` on the server log: idle, this database's errors, another's lines;
- the extension catalog build, for every extension the server has.

The cluster lives in memory (``/dev/shm``) when there is room: on a disk filesystem,
creating the files of thousands of tables right after dropping the thousands of the
run before costs the kernel more than PostgreSQL, and varies from run to run; the
figures would be about the filesystem.
"""

from __future__ import annotations

import os
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


def repeated(group: Callable[[int], list[str]], statements: int, head: tuple[str, ...] = ()) -> str:
    """`head`, then ``group(0)``, ``group(1)``, ... up to `statements` statements."""
    out = list(head)
    i = 0
    while len(out) < statements:
        out += group(i)
        i += 1
    return "\n".join(out[:statements]) + "\n"


def clean_migration(statements: int = 1000) -> str:
    """A realistic mix: tables, indexes, comments, a view, inserts."""
    return repeated(lambda i: [
        f"CREATE TABLE t{i} (id bigserial PRIMARY KEY, name text NOT NULL, "
        f"created_at timestamptz NOT NULL DEFAULT now(), score numeric(10, 2));",
        f"CREATE INDEX t{i}_name_idx ON t{i} (name);",
        f"COMMENT ON TABLE t{i} IS 'table number {i}';",
        f"INSERT INTO t{i} (name, score) VALUES ('a', 1.5), ('b', 2.5);",
        f"CREATE VIEW v{i} AS SELECT name, score FROM t{i} WHERE score > 1;",
    ], statements)  # fmt: skip


def ddl_workload(statements: int = 2000) -> str:
    """DDL only, as migration tools send it through psql -f: tables, indexes, functions."""
    return repeated(lambda i: [
        f"CREATE TABLE d{i} (id bigint PRIMARY KEY, label text NOT NULL, at timestamptz);",
        f"CREATE INDEX d{i}_label_idx ON d{i} (label);",
        f"CREATE FUNCTION d{i}_count() RETURNS bigint LANGUAGE sql "
        f"AS $$ SELECT count(*) FROM d{i} $$;",
    ], statements)  # fmt: skip


def qualified_ddl(statements: int = 2000) -> str:
    """DDL that names its schemas, as real migrations often write it."""
    return repeated(lambda i: [
        f"CREATE TABLE app.q{i} (id bigint PRIMARY KEY, label text NOT NULL, at timestamptz);",
        f"CREATE INDEX q{i}_label_idx ON app.q{i} (label);",
        f"CREATE VIEW w.v{i} AS SELECT id, label FROM app.q{i} WHERE at IS NOT NULL;",
    ], statements, ("CREATE SCHEMA app;", "CREATE SCHEMA w;"))  # fmt: skip


def application_ddl(statements: int = 2000) -> str:
    """What an application's migrations hold, in its own schema, on its search_path:
    tables with defaults and checks, indexes, views, functions."""
    return repeated(lambda i: [
        f"CREATE TABLE shop.orders{i} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
        f"customer text NOT NULL, total numeric(12, 2) NOT NULL DEFAULT 0 "
        f"CHECK (total >= 0), placed_at timestamptz NOT NULL DEFAULT now(), "
        f"meta jsonb NOT NULL DEFAULT '{{}}');",
        f"CREATE INDEX orders{i}_customer_idx ON shop.orders{i} (customer, placed_at DESC);",
        f"CREATE INDEX orders{i}_meta_idx ON shop.orders{i} USING gin (meta);",
        f"CREATE VIEW shop.recent{i} AS SELECT customer, sum(total) AS spent "
        f"FROM shop.orders{i} WHERE placed_at > now() - interval '30 days' GROUP BY customer;",
        f"CREATE FUNCTION shop.spent{i}(who text) RETURNS numeric LANGUAGE sql STABLE "
        f"AS $$ SELECT coalesce(sum(total), 0) FROM shop.orders{i} WHERE customer = who $$;",
    ], statements, ("CREATE SCHEMA shop;", "SET search_path = shop, public;"))  # fmt: skip


def dbmate_folder(folder: Path, files: int = 200) -> Path:
    """A dbmate project of `files` small migrations, nothing to heal: a table, an index,
    two rows each."""
    migrations = folder / "db" / "migrations"
    migrations.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (migrations / f"2024010100{i:04d}_table_{i}.sql").write_text(
            f"-- migrate:up\nCREATE TABLE r{i} (id bigserial PRIMARY KEY, name text NOT NULL);\n"
            f"CREATE INDEX r{i}_name_idx ON r{i} (name);\n"
            f"INSERT INTO r{i} (name) VALUES ('a');\nINSERT INTO r{i} (name) VALUES ('b');\n"
            f"-- migrate:down\nDROP TABLE r{i};\n"
        )
    return migrations


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
FLOOR = """CREATE FUNCTION bench_floor(statements text[]) RETURNS void LANGUAGE plpgsql
AS $$ DECLARE s text; BEGIN FOREACH s IN ARRAY statements LOOP EXECUTE s; END LOOP; END $$"""
#: The floor of heal.migrate's design: the same loop, each statement in a subtransaction
#: of its own (what an EXCEPTION clause opens), as heal.migrate must run them so that a
#: failed statement is undone alone and retried.
FLOOR_SUBTRANSACTION = """CREATE FUNCTION bench_floor(statements text[]) RETURNS void
LANGUAGE plpgsql AS $$ DECLARE s text; BEGIN FOREACH s IN ARRAY statements LOOP
BEGIN EXECUTE s; EXCEPTION WHEN OTHERS THEN RAISE; END; END LOOP; END $$"""
#: The floor of a runner in Python: start, import psycopg, and apply each file's up
#: section in a transaction of its own with its version row; nothing read back, nothing
#: checked, nothing recorded but the version.
PSYCOPG_RUNNER = """import sys, pathlib, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    conn.execute("CREATE TABLE floor_migrations (version text PRIMARY KEY)")
    for path in sorted(pathlib.Path(sys.argv[2]).iterdir()):
        up = path.read_text().split("-- migrate:down")[0]
        with conn.transaction():
            conn.execute(up)
            conn.execute("INSERT INTO floor_migrations VALUES (%s)", (path.name,))
"""
REACTIVE = "UPDATE heal.settings SET value = 'off' WHERE name = 'predict';"
TRIGGER_OFF = "UPDATE heal.settings SET value = 'off' WHERE name = 'predictive';"
#: The floor of the trigger's design: its PL/pgSQL wrapper calling PL/Python that finds
#: every statement known to need nothing (in a throwaway database); and the same call
#: with the SET clause the full analysis has, which saves and restores a GUC each call.
VERDICT = """CREATE OR REPLACE FUNCTION heal.ddl_verdict(query text, role name, search_path text,
    OUT schemas text[], OUT index_table name, OUT index_columns name[], OUT index_am name,
    OUT index_path name[])"""
PYTHON_FLOOR = f"""{VERDICT}
LANGUAGE plpython3u AS 'return ([], None, None, None, None)';"""
PYTHON_FLOOR_SET = f"""{VERDICT}
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS 'return ([], None, None, None, None)';"""

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

    def dbmate_up(self, dsn: str, migrations: Path) -> float:
        """The real dbmate, as a project runs it: ``dbmate up`` in the project's folder."""
        url = dsn.replace("postgresql://", "postgres://", 1) + "&sslmode=disable"
        started = time.perf_counter()
        subprocess.run([tool("dbmate"), "--no-dump-schema", "up"], check=True,
                       capture_output=True, cwd=migrations.parent.parent,
                       env={**os.environ, "DATABASE_URL": url})  # fmt: skip
        return time.perf_counter() - started

    def pgheal_migrate(self, dsn: str, migrations: Path) -> float:
        return self.timed([tool("pgheal"), "migrate", "--dsn", dsn, str(migrations)])

    def psycopg_runner(self, dsn: str, migrations: Path) -> float:
        """The floor of any runner in Python on psycopg: see PSYCOPG_RUNNER."""
        return self.timed([sys.executable, "-c", PSYCOPG_RUNNER, dsn, str(migrations)])

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

    def migrate_call(self, dsn: str, sql: str) -> tuple[float, float]:
        """One ``CALL heal.migrate`` of `sql`: its time, and what it adds to its backend's
        peak memory (VmHWM, MB) in a backend that has loaded pgheal and its parser."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CALL heal.migrate('SELECT 1')")
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
            before = peak_mb(pid)
            started = time.perf_counter()
            conn.execute("CALL heal.migrate(%s)", (sql,))
            return time.perf_counter() - started, peak_mb(pid) - before

    @staticmethod
    def floor_call(dsn: str, statements: list[str], floor: str = FLOOR) -> float:
        """The in-server floor: the same statements executed one by one by a PL/pgSQL loop,
        in one transaction, with nothing added (no split, analysis, subtransaction or
        record): what heal.migrate can approach and never beat. With `floor`
        FLOOR_SUBTRANSACTION, the floor of its design."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(floor)
            started = time.perf_counter()
            conn.execute("SELECT bench_floor(%s)", (statements,))
            return time.perf_counter() - started


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


def tool(name: str) -> str:
    """A migration tool of the venv's (PyPI packages), or the system's."""
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"bench: {name} is not installed; make test installs it")
    return found


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


#: The trigger's workloads: what the file holds, and its label.
DDL_WORKLOADS = {
    "ddl": "DDL in public (tables, indexes, functions)",
    "qualified": "schema-qualified DDL (app.t, w.v)",
    "application": "an application schema (defaults, checks, indexes, views, functions)",
}


def trigger(bench: Bench, files: dict[str, Path]) -> None:
    print(f"2,000 DDL statements through psql -1 -f, predictive trigger off vs on "
          f"(median of {DDL_ROUNDS} rounds), three workloads:")  # fmt: skip
    for name, label in DDL_WORKLOADS.items():
        off, floor, floor_set, on = bench.compare(
            files[name],
            [(TRIGGER_OFF, bench.psql_file), (PYTHON_FLOOR, bench.psql_file),
             (PYTHON_FLOOR_SET, bench.psql_file), ("", bench.psql_file)],
            DDL_ROUNDS,
        )  # fmt: skip
        print(f" {label}:")
        print(line("trigger off", off))
        print(line("PL/Python doing nothing", floor, off))
        print(line("  the same, SET search_path", floor_set, off))
        print(line("trigger on", on, off, "  (target <= 1.10)"))


def catalog(bench: Bench, files: dict[str, Path]) -> None:
    build_ms, extensions, objects = bench.catalog_build()
    print(
        f"extension catalog: {extensions} extensions, {objects} objects, "
        f"built in {build_ms:.0f} ms (median of {RUNS}, server side)"
    )


#: Statements of the scaling table, and the rounds each size runs.
SCALES = {1_000: 7, 10_000: 5, 100_000: 3, 1_000_000: 1}


def scaling(bench: Bench, files: dict[str, Path]) -> None:
    """Seed scripts of 1,000 to 1,000,000 statements: heal.migrate against the in-server
    floor and psql -1 -f, in paired rounds, and the backend memory heal.migrate adds."""
    print("seed scripts (a table, one INSERT a row): CALL heal.migrate against the in-server "
          "floor and psql -1 -f\n(targets: <= 1.5 x floor, <= 1.0 x psql, "
          "memory <= 3 x script + 64 MB):")  # fmt: skip
    print("(floor: a PL/pgSQL loop; +subxact: the same, a subtransaction a statement)")
    print(f"  {'statements':>10} {'script':>8} {'migrate':>9} {'floor':>9} {'+subxact':>9} "
          f"{'psql':>9} {'/floor':>7} {'/subxact':>8} {'/psql':>6} {'+memory':>9} "
          f"{'target':>7}")  # fmt: skip
    for size, rounds in SCALES.items():
        sql = seed_script(size)
        path = files["clean"].parent / f"seed_{size}.sql"
        path.write_text(sql)
        statements = sql.splitlines()
        times: dict[str, list[float]] = {v: [] for v in ("migrate", "floor", "subxact", "psql")}
        grown = []
        for _ in range(rounds):
            for variant, bucket in times.items():
                dsn = bench.fresh_db(TRIGGER_OFF if variant != "migrate" else "")
                if variant == "migrate":
                    took, added = bench.migrate_call(dsn, sql)
                    bucket.append(took)
                    grown.append(added)
                elif variant == "floor":
                    bucket.append(bench.floor_call(dsn, statements))
                elif variant == "subxact":
                    bucket.append(bench.floor_call(dsn, statements, FLOOR_SUBTRANSACTION))
                else:
                    bucket.append(bench.psql_file(dsn, path))
                bench.drop(dsn)
        path.unlink()
        mb = len(sql.encode()) / 2**20
        over = {
            v: statistics.median(m / b for m, b in zip(times["migrate"], t, strict=True))
            for v, t in times.items()
        }
        took = {v: statistics.median(t) for v, t in times.items()}
        print(f"  {size:>10,} {mb:6.1f}MB {took['migrate']:8.2f}s {took['floor']:8.2f}s "
              f"{took['subxact']:8.2f}s {took['psql']:8.2f}s {over['floor']:7.2f} "
              f"{over['subxact']:8.2f} {over['psql']:6.2f} {max(grown):7.1f}MB "
              f"{3 * mb + 64:5.0f}MB")  # fmt: skip


def runner(bench: Bench, files: dict[str, Path]) -> None:
    """pgheal migrate against the real dbmate on the same folder, nothing to heal."""
    migrations = dbmate_folder(files["clean"].parent / "dbmate")
    count = len(list(migrations.iterdir()))
    dbmate, floor, pgheal = bench.compare(
        migrations,
        [(TRIGGER_OFF, bench.dbmate_up), (TRIGGER_OFF, bench.psycopg_runner),
         ("", bench.pgheal_migrate)],
    )  # fmt: skip
    print(f"{count} dbmate migrations (a table, an index, two rows each), nothing to heal "
          f"(median of {RUNS} rounds):")  # fmt: skip
    print(line("dbmate up", dbmate))
    print(line("Python + psycopg floor", floor, dbmate))
    print(line("pgheal migrate", pgheal, dbmate, "  (target <= 1.0)"))


def scan(bench: Bench, files: dict[str, Path]) -> None:
    ScanBench(bench, files["clean"].parent).run((2_000, 20_000, 100_000))


#: The sections of ``make bench``, in the order they run; ``bench.py NAME ...`` runs some.
SECTIONS: dict[str, Callable[[Bench, dict[str, Path]], None]] = {
    "migrate": clean_and_heals, "runner": runner, "scaling": scaling, "trigger": trigger,
    "scan": scan, "catalog": catalog,
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
        texts = {"clean": clean_migration(), "three": THREE_HEALS, "five": FIVE_HEALS,
                 "ddl": ddl_workload(), "qualified": qualified_ddl(),
                 "application": application_ddl()}  # fmt: skip
        for name, text in texts.items():
            files[name] = Path(tmp, f"{name}.sql")
            files[name].write_text(text)
        for name, section in SECTIONS.items():
            if not argv or name in argv:
                section(bench, files)
        bench.admin.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
