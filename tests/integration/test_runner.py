"""pgheal migrate DIR, --dry-run, --plan, and statements run outside a transaction."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from pgheal.runner import Migration, RunnerError, discover, parts

from .conftest import extensions, scalar
from .test_installer import pgheal


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


FOLDER = {
    "0001_schema.sql": "CREATE TABLE app.accounts (id uuid DEFAULT uuid_generate_v4());\n",
    "0002_email.sql": "ALTER TABLE app.accounts ADD COLUMN email citext;\n",
    "0010_index.sql": (
        "ALTER TABLE app.accounts ADD COLUMN name text;\n"
        "CREATE INDEX CONCURRENTLY accounts_name_idx ON app.accounts (name);\n"
        "COMMENT ON INDEX app.accounts_name_idx IS 'by name';\n"
    ),
    "README.md": "not a migration",
}


def test_folder_applies_in_numeric_order_and_skips_applied(conn, dsn, tmp_path):
    folder = write(tmp_path / "migrations", FOLDER)
    first = pgheal("migrate", "--dsn", dsn, str(folder))
    assert first.returncode == 0, first.stdout + first.stderr
    names = [r[0] for r in conn.execute("SELECT name FROM heal.migrations ORDER BY id")]
    assert names == ["0001_schema", "0002_email", "0010_index", "0010_index.2", "0010_index.3"]
    assert scalar(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = "
                        "'app.accounts_name_idx'::regclass") is True  # fmt: skip
    assert scalar(conn, "SELECT source FROM heal.migrations WHERE name = '0010_index.2'") == "cli"
    assert {"uuid-ossp", "citext"} <= set(extensions(conn))
    second = pgheal("migrate", "--dsn", dsn, str(folder))
    assert second.returncode == 0
    assert second.stdout.count("skipped") == 3
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 5


def test_folder_stops_at_the_first_failure(conn, dsn, tmp_path):
    folder = write(tmp_path / "m", {
        "0001_ok.sql": "CREATE TABLE a (x int);",
        "0002_bad.sql": "CREATE TABLE b (x int DEFAULT nope());",
        "0003_never.sql": "CREATE TABLE c (x int);",
    })  # fmt: skip
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 1
    assert "0003_never" not in result.stdout
    assert scalar(conn, "SELECT to_regclass('c')") is None
    assert scalar(conn, "SELECT to_regclass('a')::text") == "a"


def test_folder_dry_run_changes_nothing(conn, dsn, tmp_path):
    folder = write(tmp_path / "migrations", FOLDER)
    before = extensions(conn)
    result = pgheal("migrate", "--dry-run", "--dsn", dsn, str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry_run" in result.stdout
    assert "0010_index" in result.stdout and "failed" not in result.stdout
    assert extensions(conn) == before
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 0
    assert scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'app'") == 0


def test_folder_plan_maps_problems_to_files(conn, dsn, tmp_path):
    folder = write(tmp_path / "migrations", {**FOLDER, "0020_bad.sql": "\n\nSELECT dblink('x');\n"})
    result = pgheal("migrate", "--plan", "--dsn", dsn, str(folder))
    assert result.returncode == 1  # dblink is denied
    out = result.stdout
    assert "0001_schema" in out and "schema app" in out and "uuid_generate_v4" in out
    assert "0002_email" in out and "type citext" in out
    assert "0020_bad" in out and "dblink" in out and "deny list" in out
    plan = pgheal("plan", "--dsn", dsn, str(folder / "0002_email.sql"))
    assert plan.returncode == 0 and "type citext" in plan.stdout
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 0


def test_discover_and_parts(tmp_path):
    folder = write(tmp_path / "m", {"2_b.sql": "SELECT 2;", "10_a.sql": "SELECT 10;", "x.sql": ""})
    assert [m.name for m in discover([folder]).migrations] == ["2_b", "10_a"]
    with pytest.raises(RunnerError, match="share a name"):
        discover([folder / "2_b.sql", folder / "2_b.sql"])
    with pytest.raises(RunnerError, match=r"no migrations in a layout pgheal knows"):
        discover([write(tmp_path / "empty", {})])
    split_up = parts(Migration("m", folder / "m.sql", "SELECT 1; VACUUM; SELECT 2; SELECT 3;"))
    assert [(p.name, p.outside) for p in split_up] == [
        ("m", None),
        ("m.2", "VACUUM"),
        ("m.3", None),
    ]
    assert split_up[2].sql == "SELECT 2;\nSELECT 3;\n"


def test_detach_partition_concurrently_runs_at_top_level(conn, dsn, tmp_path):
    """Found from the parse tree, like every statement PostgreSQL refuses in a
    transaction block: heal.migrate says so, pgheal migrate runs it on its own."""
    folder = write(tmp_path / "m", {
        "0001_parts.sql": "CREATE TABLE events (at date) PARTITION BY RANGE (at);\n"
                          "CREATE TABLE events_2025 PARTITION OF events\n"
                          "    FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');\n",
        "0002_detach.sql": "ALTER TABLE events DETACH PARTITION events_2025 CONCURRENTLY;\n",
    })  # fmt: skip
    with pytest.raises(psycopg.errors.ActiveSqlTransaction) as info:
        conn.execute("CALL heal.migrate('ALTER TABLE t DETACH PARTITION c CONCURRENTLY')")
    assert "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY cannot run inside heal.migrate" in (
        str(info.value)
    )
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert scalar(conn, "SELECT count(*) FROM pg_inherits") == 0  # detached
    assert scalar(conn, "SELECT source FROM heal.migrations WHERE name = '0002_detach'") == "cli"
