"""``make conformance``: PostgreSQL's own contrib regression scripts, healed.

Material nobody here wrote: every contrib module's ``sql/*.sql`` from the Debian
source package of the server, in its Makefile's ``REGRESS`` order. Each module runs
statement by statement in a database of its own, three times:

- **baseline**: plain PostgreSQL, the scripts as they are (their ``CREATE EXTENSION``);
- **heal.migrate**: pgheal installed, the ``CREATE EXTENSION`` statements taken out,
  each statement through ``CALL heal.migrate`` (one that cannot run inside a
  transaction runs at top level, as ``pgheal migrate`` does);
- **psql**: pgheal installed, the same statements sent as they are: only the DDL
  trigger can heal them.

What counts is how many of the statements that succeed on the baseline succeed healed,
and that none that fails on the baseline succeeds because of pgheal. Modules whose
extensions the default policy denies run with those allowed (``allow_extensions``).
Results go to stdout and to ``.cache/conformance.json``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pglast
import psycopg

from pgheal import deploy, serverdeps
from pgheal.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
#: Debian's source archive; apt-get fetches from it with a sources list of its own.
SOURCES = """deb-src http://deb.debian.org/debian bookworm main
deb-src http://deb.debian.org/debian bookworm-updates main
"""
#: Statements that only read or write rows: no event trigger sees them.
DML = frozenset({"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "ExplainStmt",
                 "CopyStmt", "ExecuteStmt", "DeclareCursorStmt", "FetchStmt", "CallStmt",
                 "DoStmt", "MergeStmt", "VariableShowStmt", "PrepareStmt"})  # fmt: skip
#: Modules whose tests need what a throwaway cluster does not have (a preloaded
#: library, a security module, a replication slot, a second server).
SKIPPED = {
    "sepgsql": "needs SELinux",
    "pg_stat_statements": "needs shared_preload_libraries",
    "auto_explain": "needs shared_preload_libraries",
    "passwordcheck": "needs shared_preload_libraries",
    "basic_archive": "needs archive_library",
    "test_decoding": "needs wal_level = logical and replication slots",
    "postgres_fdw": "needs a server to connect to (its own, by loopback)",
    "dblink": "needs a server to connect to (its own, by loopback)",
}
_COPY_IN = re.compile(
    r"^\s*COPY\b[^;]*?\bFROM\s+stdin\b[^;]*;[^\n]*\n.*?^\\\.[ \t]*$", re.I | re.M | re.S
)
_REGRESS = re.compile(r"^REGRESS\s*[:+]?=\s*((?:.*\\\n)*.*)$", re.M)


@dataclass
class Module:
    name: str
    extensions: list[str]
    statements: list[str]
    denied: bool = False
    results: dict[str, list[bool]] = field(default_factory=dict)
    installed: list[str] = field(default_factory=list)


# -- the material ----------------------------------------------------------------------


def source_tarball() -> Path:
    """The orig tarball of the server's Debian source package (fetched once): its own
    version where the archive still has it, else the newest of the same major (the
    regression scripts change little within one)."""
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "postgresql-15"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    cached = sorted(CACHE.glob("postgresql-15_*.orig.tar.bz2"))
    if cached:
        return cached[-1]
    CACHE.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as apt:
        lists = Path(apt, "lists")
        (lists / "partial").mkdir(parents=True)
        Path(apt, "sources.list").write_text(SOURCES)
        options = [f"-oDir::Etc::SourceList={apt}/sources.list",
                   "-oDir::Etc::SourceParts=/dev/null", f"-oDir::State::Lists={lists}",
                   "-oAPT::Sandbox::User=root"]  # fmt: skip
        subprocess.run(["apt-get", *options, "-qq", "update"], check=True)
        listed = subprocess.run(["apt-cache", *options, "showsrc", "postgresql-15"],
                                capture_output=True, text=True).stdout  # fmt: skip
        versions = re.findall(r"^Version: (\S+)$", listed, re.M)
        for candidate in [version, *sorted(set(versions) - {version}, reverse=True)]:
            fetched = subprocess.run(["apt-get", *options, "-qq", "source", "--download-only",
                                      f"postgresql-15={candidate}"], cwd=CACHE)  # fmt: skip
            if fetched.returncode == 0:
                break
    cached = sorted(CACHE.glob("postgresql-15_*.orig.tar.bz2"))
    if not cached:
        raise SystemExit("cannot fetch the Debian source package of postgresql-15")
    return cached[-1]


def modules(tarball: Path, available: set[str]) -> tuple[list[Module], dict[str, str]]:
    """Every contrib module with regression scripts, in REGRESS order; and those left
    out, with why."""
    with tarfile.open(tarball) as tar:
        members = {m.name.split("/", 1)[1]: m for m in tar.getmembers() if "/" in m.name}

        def read(path: str) -> str | None:
            member = members.get(path)
            if member is None:
                return None
            data = tar.extractfile(member)
            return data.read().decode(errors="replace") if data else None

        names = sorted({p.split("/")[1] for p in members
                        if re.fullmatch(r"contrib/[^/]+/sql/[^/]+\.sql", p)})  # fmt: skip
        found, left = [], {}
        for name in names:
            if name in SKIPPED:
                left[name] = SKIPPED[name]
                continue
            makefile = read(f"contrib/{name}/Makefile") or ""
            match = _REGRESS.search(makefile)
            order = match[1].replace("\\\n", " ").split() if match else []
            texts = [read(f"contrib/{name}/sql/{test}.sql") for test in order]
            script = "\n".join(t for t in texts if t)
            statements = split(script)
            extensions = sorted({_extension(s) for s in statements if creates_extension(s)}
                                - {None})  # fmt: skip
            missing = [e for e in extensions if e not in available]
            if missing or not extensions:
                left[name] = (f"extension {', '.join(missing)} is not available on this server"
                              if missing else "its tests create no extension")  # fmt: skip
                continue
            found.append(Module(name, extensions, statements))
    return found, left


def _extension(statement: str) -> str | None:
    try:
        ((kind, node),) = json.loads(pglast.parser.parse_sql_json(statement))["stmts"][0][
            "stmt"].items()  # fmt: skip
    except Exception:
        return None
    return node.get("extname") if kind == "CreateExtensionStmt" else None


def split(script: str) -> list[str]:
    """The script's statements, as psql would send them: psql's meta-command lines out,
    split at the scanner's top-level semicolons (a BEGIN ATOMIC body kept whole)."""
    # COPY ... FROM stdin with its data lines (up to \.), and COPY ... TO stdout: psql's
    # own protocol work, not statements a client sends as they are.
    script = _COPY_IN.sub("", script)
    text = "\n".join("" if line.lstrip().startswith("\\") else line
                     for line in script.splitlines())  # fmt: skip
    statements, start, atomic = [], 0, False  # the scanner's positions count characters
    try:
        tokens = list(pglast.parser.scan(text))
    except Exception:
        return [s for s in (p.strip() for p in text.split(";")) if s]
    previous = None
    for token in tokens:
        if token.name == "ATOMIC" and previous == "BEGIN_P":
            atomic = True
        elif token.name == "END_P" and atomic:
            atomic = False
        elif token.name == "ASCII_59" and not atomic:
            statement = text[start : token.start].strip()
            if statement:
                statements.append(statement)
            start = token.end + 1
        if token.name not in ("SQL_COMMENT", "C_COMMENT"):
            previous = token.name
    tail = text[start:].strip()
    if tail and pglast.parser.scan(tail):
        statements.append(tail)
    return [s for s in statements if not _copy_stdio(s)]


def tree(statement: str) -> tuple[str, dict] | None:
    """The statement's node type and fields; None when it does not parse alone."""
    try:
        ((node_type, node),) = json.loads(pglast.parser.parse_sql_json(statement))["stmts"][
            0]["stmt"].items()  # fmt: skip
    except Exception:
        return None
    return node_type, node


def kind(statement: str) -> str | None:
    parsed = tree(statement)
    return parsed[0] if parsed else None


def creates_extension(statement: str) -> bool:
    return kind(statement) == "CreateExtensionStmt"


def _copy_stdio(statement: str) -> bool:
    """COPY ... FROM stdin / TO stdout: psql's protocol work, not a statement to send."""
    parsed = tree(statement)
    return parsed is not None and parsed[0] == "CopyStmt" and "filename" not in parsed[1]


def session_state(statement: str) -> bool:
    """Transaction control and role changes: the session's, not a migration's (a
    client keeps its transaction block around heal.migrate, and its role)."""
    parsed = tree(statement)
    if parsed is None:
        return False
    node_type, node = parsed
    return node_type == "TransactionStmt" or (
        node_type == "VariableSetStmt" and node.get("name") in ("role", "session_authorization")
    )


# -- running -----------------------------------------------------------------------------


def run_statements(dsn: str, statements: list[str], through: str | None) -> list[bool]:
    """Each statement's success, in order, in one session (as pg_regress runs a script)."""
    results = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '20s'")
        conn.execute("SET lock_timeout = '5s'")
        conn.execute("SET client_min_messages = warning")
        for statement in statements:
            results.append(_run_one(conn, statement, through))
    return results


def _run_one(conn: psycopg.Connection, statement: str, through: str | None) -> bool:
    if through is not None and session_state(statement):
        through = None
    try:
        if through is None:
            conn.execute(statement)
        else:
            try:
                conn.execute(through, (statement,))
            except psycopg.errors.ActiveSqlTransaction as exc:
                if "cannot run inside heal.migrate" not in str(exc):
                    raise
                conn.execute(statement)  # at top level, as pgheal migrate runs it
        return True
    except psycopg.OperationalError:
        if conn.closed:
            raise
        return False
    except psycopg.Error:
        return False


def measure(cluster: Cluster, module: Module, template: str) -> None:
    stripped = [s for s in module.statements if not creates_extension(s)]
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        for mode in ("baseline", "migrate", "psql"):
            admin.execute(f'DROP DATABASE IF EXISTS "c_{mode}" WITH (FORCE)')
            source = "template0" if mode == "baseline" else template
            admin.execute(f'CREATE DATABASE "c_{mode}" TEMPLATE "{source}"')
            dsn = cluster.dsn(f"c_{mode}")
            if module.denied and mode != "baseline":
                with psycopg.connect(dsn, autocommit=True) as db:
                    db.execute("UPDATE heal.settings SET value = %s WHERE name = "
                               "'allow_extensions'", (",".join(module.extensions),))  # fmt: skip
            if mode == "baseline":
                full = run_statements(dsn, module.statements, None)
                module.results[mode] = [ok for s, ok in zip(module.statements, full, strict=True)
                                        if not creates_extension(s)]  # fmt: skip
            else:
                through = "CALL heal.migrate(%s)" if mode == "migrate" else None
                module.results[mode] = run_statements(dsn, stripped, through)
                if mode == "migrate":  # healed: an extension a heal installed (tests may
                    with psycopg.connect(dsn) as db:  # drop it again at their end)
                        module.installed = [r[0] for r in db.execute(
                            """SELECT e FROM unnest(%s::text[]) e WHERE EXISTS (
                                   SELECT FROM heal.build_events b
                                    WHERE b.event_type = 'auto_heal_success'
                                      AND b.fix_sql LIKE '%%EXTENSION IF NOT EXISTS '
                                          || quote_ident(e) || ' %%')""",
                            (module.extensions,))]  # fmt: skip
        module.statements = stripped


@dataclass
class Figures:
    baseline_ok: int = 0
    migrate_ok: int = 0
    psql_ok: int = 0
    ddl_ok: int = 0
    ddl_psql_ok: int = 0
    false_successes: int = 0
    modules: int = 0
    first_use_healed: int = 0

    def add(self, module: Module) -> None:
        base, migrate, psql = (module.results[m] for m in ("baseline", "migrate", "psql"))
        self.modules += 1
        self.first_use_healed += set(module.installed) == set(module.extensions)
        for statement, b, m, p in zip(module.statements, base, migrate, psql, strict=True):
            if b:
                self.baseline_ok += 1
                self.migrate_ok += m
                self.psql_ok += p
                if kind(statement) not in DML:
                    self.ddl_ok += 1
                    self.ddl_psql_ok += p
            else:
                self.false_successes += m or p

    @staticmethod
    def rate(part: int, whole: int) -> str:
        return f"{100 * part / whole:.1f}%" if whole else "-"


def main() -> int:
    started = time.monotonic()
    tarball = source_tarball()
    cluster = Cluster(pg_cron=False, csvlog=False).start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            available = {r[0] for r in admin.execute("SELECT name FROM pg_available_extensions")}
            admin.execute("CREATE DATABASE c_template")
        with psycopg.connect(cluster.dsn("c_template"), autocommit=True) as db:
            deploy.install(db, serverdeps.default_path())
            value = db.execute(
                "SELECT value FROM heal.settings WHERE name = 'deny_extensions'"
            ).fetchone()[0]
            denied = {e.strip() for e in value.split(",")}
        found, left = modules(tarball, available)
        groups = {"default policy": Figures(), "deny-listed, allowed by a setting": Figures()}
        print(f"{'module':22} {'stmts':>6} {'baseline':>9} {'migrate':>8} {'psql':>8}  installed")
        for module in found:
            module.denied = bool(set(module.extensions) & denied)
            measure(cluster, module, "c_template")
            base, migrate, psql = (module.results[m] for m in ("baseline", "migrate", "psql"))
            ok = sum(base)
            print(f"{module.name:22} {len(module.statements):>6} {ok:>9} "
                  f"{sum(m for m, b in zip(migrate, base, strict=True) if b):>8} "
                  f"{sum(p for p, b in zip(psql, base, strict=True) if b):>8}  "
                  f"{','.join(module.installed) or '-'}", flush=True)  # fmt: skip
            groups["deny-listed, allowed by a setting" if module.denied else "default policy"].add(
                module)  # fmt: skip
        print()
        for name, f in groups.items():
            print(f"{name}: {f.modules} modules, {f.baseline_ok} statements succeed on the "
                  f"baseline; through heal.migrate {f.migrate_ok} "
                  f"({f.rate(f.migrate_ok, f.baseline_ok)}); through psql {f.psql_ok} "
                  f"({f.rate(f.psql_ok, f.baseline_ok)}), DDL {f.ddl_psql_ok} of {f.ddl_ok} "
                  f"({f.rate(f.ddl_psql_ok, f.ddl_ok)}); first use healed in "
                  f"{f.first_use_healed} of {f.modules}; successes pgheal made of failures: "
                  f"{f.false_successes}")  # fmt: skip
        for name, why in sorted(left.items()):
            print(f"not run: {name}: {why}")
        CACHE.mkdir(exist_ok=True)
        (CACHE / "conformance.json").write_text(json.dumps({
            "groups": {k: asdict(v) for k, v in groups.items()},
            "modules": [{"name": m.name, "extensions": m.extensions, "denied": m.denied,
                         "installed": m.installed,
                         "statements": [{"sql": s[:200], **{k: v[i] for k, v in m.results.items()}}
                                        for i, s in enumerate(m.statements)]}
                        for m in found],
            "not_run": left,
        }, indent=1))  # fmt: skip
        print(f"{time.monotonic() - started:.0f} s")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
