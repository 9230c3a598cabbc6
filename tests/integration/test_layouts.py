"""pgheal migrate on folders laid out for other migration tools.

Every folder here holds, besides its migrations, the down, undo, revert or verify
scripts its tool keeps, each of which would destroy the data if it ran: the table
``keep`` and its rows must survive every run, and a second run applies nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import scalar
from .test_installer import pgheal

DESTROY = "DROP TABLE keep;\n"
INIT = (
    "CREATE TABLE keep (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), n int);\n"
    "INSERT INTO keep (n) SELECT generate_series(1, 3);\n"
)
MORE = "ALTER TABLE keep ADD COLUMN note text;\n"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


SQITCH_PLAN = """%syntax-version=1.0.0
%project=app

init 2024-01-01T00:00:00Z Ann <ann@example.com> # the table
more [init] 2024-01-02T00:00:00Z Ann <ann@example.com> # a column
@v1.0 2024-01-03T00:00:00Z Ann <ann@example.com> # tag
more [more@v1.0] 2024-01-04T00:00:00Z Ann <ann@example.com> # reworked
"""

LAYOUTS = {
    "pgheal": ({"0001_init.sql": INIT, "0002_more.sql": MORE}, ["0001_init", "0002_more"]),
    "supabase": (
        {"20240101000000_init.sql": INIT, "20240102000000_more.sql": MORE},
        ["20240101000000_init", "20240102000000_more"],
    ),
    "flyway": (
        {
            "flyway.conf": "flyway.url=jdbc:postgresql://localhost/app\n"
            "flyway.locations=filesystem:sql\n",
            "sql/V1__init.sql": INIT,
            "sql/V1_1__between.sql": "UPDATE keep SET n = n * 10;\n",
            "sql/V2__more.sql": MORE,
            "sql/nested/V10__later.sql": "COMMENT ON TABLE keep IS 'ten';\n",
            "sql/R__view.sql": "CREATE OR REPLACE VIEW keep_view AS SELECT n FROM keep;\n",
            "sql/U2__more.sql": DESTROY,
            "sql/U1__init.sql": DESTROY,
        },
        ["V1__init", "V1_1__between", "V2__more", "V10__later", "R__view"],
    ),
    "golang-migrate": (
        {
            "1_init.up.sql": INIT,
            "1_init.down.sql": DESTROY,
            "2_more.up.sql": MORE,
            "2_more.down.sql": "ALTER TABLE keep DROP COLUMN note;\n",
            "10_later.up.sql": "COMMENT ON TABLE keep IS 'ten';\n",
            "10_later.down.sql": DESTROY,
        },
        ["1_init", "2_more", "10_later"],
    ),
    "dbmate": (
        {
            "20240101000000_init.sql": f"-- migrate:up\n{INIT}\n-- migrate:down\n{DESTROY}",
            "20240102000000_index.sql": "-- migrate:up transaction:false\n"
            "CREATE INDEX CONCURRENTLY keep_n_idx ON keep (n);\n"
            "COMMENT ON INDEX keep_n_idx IS 'by n';\n"
            f"-- migrate:down\nDROP INDEX keep_n_idx;\n{DESTROY}",
        },
        ["20240101000000_init", "20240102000000_index", "20240102000000_index.2"],
    ),
    "prisma": (
        {
            "migration_lock.toml": 'provider = "postgresql"\n',
            "20240101000000_init/migration.sql": INIT,
            "20240102000000_more/migration.sql": MORE,
        },
        ["20240101000000_init", "20240102000000_more"],
    ),
    "hasura": (
        {
            "1700000000000_init/up.sql": INIT,
            "1700000000000_init/down.sql": DESTROY,
            "1700000000001_more/up.sql": MORE,
            "1700000000001_more/down.sql": DESTROY,
        },
        ["1700000000000_init", "1700000000001_more"],
    ),
    "graphile-migrate": (
        {
            "committed/000001.sql": f"--! Previous: -\n--! Hash: sha1:0123abcd\n\n{INIT}",
            "committed/000002.sql": "--! Previous: sha1:0123abcd\n--! Hash: sha1:4567\n"
            "--! no-transaction\n\nCREATE INDEX CONCURRENTLY keep_n_idx ON keep (n);\n",
            "current.sql": DESTROY,
        },
        ["000001", "000002"],
    ),
    "sqitch": (
        {
            "sqitch.plan": SQITCH_PLAN,
            "sqitch.conf": "[core]\n    engine = pg\n",
            "deploy/init.sql": f"BEGIN;\n{INIT}COMMIT;\n",
            "deploy/more@v1.0.sql": MORE,
            "deploy/more.sql": "ALTER TABLE keep ALTER COLUMN note SET DEFAULT 'reworked';\n",
            "revert/init.sql": DESTROY,
            "revert/more.sql": DESTROY,
            "revert/more@v1.0.sql": DESTROY,
            "verify/init.sql": f"SELECT 1/0;\n{DESTROY}",
        },
        ["init", "more@v1.0", "more"],
    ),
    "yoyo": (
        {
            "0001_init.sql": INIT,
            "0001_init.rollback.sql": DESTROY,
            "0002_more.sql": f"-- depends: 0003_first\n{MORE}",
            "0002_more.rollback.sql": DESTROY,
            "0003_first.sql": "-- depends: 0001_init\nUPDATE keep SET n = n + 1;\n",
        },
        ["0001_init", "0003_first", "0002_more"],
    ),
}


def names(conn) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM heal.migrations ORDER BY id")]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_layout_runs_in_its_order_and_never_a_down_script(conn, dsn, tmp_path, layout):
    files, expected = LAYOUTS[layout]
    folder = tree(tmp_path / layout, files)
    first = pgheal("migrate", "--dsn", dsn, str(folder))
    assert first.returncode == 0, first.stdout + first.stderr
    assert names(conn) == expected
    assert scalar(conn, "SELECT count(*) FROM keep") == 3
    assert scalar(conn, "SELECT count(*) FROM heal.migrations WHERE status <> 'succeeded'") == 0
    assert scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'uuid-ossp'") == 1
    second = pgheal("migrate", "--dsn", dsn, str(folder))
    assert second.returncode == 0, second.stdout + second.stderr
    assert names(conn) == expected  # nothing applied again
    assert scalar(conn, "SELECT count(*) FROM keep") == 3
    forced = pgheal("migrate", "--dsn", dsn, "--layout", layout, str(folder))
    assert forced.returncode == 0 and names(conn) == expected


def test_dbmate_runs_no_transaction_sections_statement_by_statement(conn, dsn, tmp_path):
    files, _ = LAYOUTS["dbmate"]
    result = pgheal("migrate", "--dsn", dsn, str(tree(tmp_path / "db", files)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert scalar(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'keep_n_idx'::regclass")
    assert scalar(conn, "SELECT obj_description('keep_n_idx'::regclass)") == "by n"
    assert "its -- migrate:down section" in result.stderr


def test_flyway_versions_are_numbers_and_a_changed_repeatable_runs_again(conn, dsn, tmp_path):
    files, _ = LAYOUTS["flyway"]
    folder = tree(tmp_path / "fw", files)
    assert pgheal("migrate", "--dsn", dsn, str(folder)).returncode == 0
    assert scalar(conn, "SELECT sum(n) FROM keep") == 60  # V1_1 ran after V1, before V2
    (folder / "sql/R__view.sql").write_text(
        "CREATE OR REPLACE VIEW keep_view AS SELECT n, n * 2 AS twice FROM keep;\n"
    )
    again = pgheal("migrate", "--dsn", dsn, str(folder))
    assert again.returncode == 0, again.stdout + again.stderr
    assert names(conn)[-1] == "R__view" and names(conn).count("R__view") == 2
    assert scalar(conn, "SELECT twice FROM keep_view ORDER BY n LIMIT 1") == 20
    assert "Flyway undo migration" in again.stderr


def test_explicit_flyway_files_run_in_version_order(conn, dsn, tmp_path):
    folder = tree(tmp_path / "fw", {
        "V10__comment.sql": "COMMENT ON TABLE t IS 'ten';",
        "V2__table.sql": "CREATE TABLE t (a int);",
    })  # fmt: skip
    result = pgheal("migrate", "--dsn", dsn, str(folder / "V10__comment.sql"),
                    str(folder / "V2__table.sql"))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert names(conn) == ["V2__table", "V10__comment"]


@pytest.mark.parametrize(
    "path",
    [
        "1_init.down.sql",
        "U1__init.sql",
        "1700000000000_init/down.sql",
        "revert/init.sql",
        "0001_init.rollback.sql",
        "0001_init_down.sql",
    ],
)
def test_a_down_script_given_by_name_is_refused(conn, dsn, tmp_path, path):
    folder = tree(tmp_path / "m", {path: DESTROY, "sqitch.plan": SQITCH_PLAN})
    conn.execute("CREATE TABLE keep (n int)")
    result = pgheal("migrate", "--dsn", dsn, str(folder / path))
    assert result.returncode == 2
    assert "never runs one" in result.stderr
    assert scalar(conn, "SELECT to_regclass('keep')::text") == "keep"


def test_an_ambiguous_folder_is_refused_with_the_candidates(conn, dsn, tmp_path):
    folder = tree(tmp_path / "m", {"V1__init.sql": INIT, "0002_more.sql": MORE})
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 2
    assert "ambiguous" in result.stderr
    assert "flyway (V1__init.sql)" in result.stderr and "pgheal (0002_more.sql)" in result.stderr
    assert "--layout" in result.stderr
    assert scalar(conn, "SELECT count(*) FROM heal.migrations") == 0
    chosen = pgheal("migrate", "--dsn", dsn, "--layout", "flyway", str(folder))
    assert chosen.returncode == 0, chosen.stdout + chosen.stderr
    assert names(conn) == ["V1__init"]


def test_a_numbered_folder_never_runs_its_rollback_scripts(conn, dsn, tmp_path):
    folder = tree(tmp_path / "m", {
        "0001_init.sql": INIT, "0001_init_down.sql": DESTROY,
        "0002_more.sql": MORE, "0002_more.undo.sql": DESTROY,
    })  # fmt: skip
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert names(conn) == ["0001_init", "0002_more"]
    assert "not run" in result.stderr and "0002_more.undo.sql" in result.stderr


def test_an_unknown_folder_names_the_layouts(dsn, tmp_path):
    folder = tree(tmp_path / "m", {"notes.sql": "SELECT 1;"})
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 2
    assert "no migrations in a layout pgheal knows" in result.stderr
    assert "golang-migrate" in result.stderr and "sqitch" in result.stderr


def test_psql_run_migrations_keep_their_meta_commands(conn, dsn, tmp_path):
    folder = tree(tmp_path / "m", {
        "0001_init.sql": "\\set ON_ERROR_STOP 1\n\\set QUIET on\n\\timing on\n"
                         "\\pset pager off\n\\echo creating\n\\ir parts/table.sql\n"
                         "\\unset QUIET\nINSERT INTO keep (n) VALUES (4);\n",
        "parts/table.sql": INIT,
    })  # fmt: skip
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert scalar(conn, "SELECT count(*) FROM keep") == 4
    assert "skipped psql meta-command \\set on line 1" in result.stdout


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("\\set n 5", "sets psql variable n"),
        ("\\i other.sql", "includes a file"),
        ("\\connect other", "is not SQL"),
    ],
)
def test_heal_migrate_refuses_meta_commands_it_cannot_honour(conn, line, why):
    with pytest.raises(Exception, match=why) as info:
        conn.execute("CALL heal.migrate(%s)", (f"SELECT 1;\n{line}\nSELECT 2;",))
    assert "on line 2" in str(info.value)


def test_an_include_that_includes_itself_is_refused(dsn, tmp_path):
    folder = tree(tmp_path / "m", {"0001_loop.sql": "\\ir 0001_loop.sql\nSELECT 1;\n"})
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 2 and "includes itself" in result.stderr


@pytest.mark.parametrize(
    "change",
    ["../revert/init", "init/../../revert/init", "a/./b", "-init", "init-", "x^1"],
)
def test_a_sqitch_change_name_never_leaves_deploy(conn, dsn, tmp_path, change):
    folder = tree(tmp_path / "s", {
        "sqitch.plan": f"%project=app\n\n{change} 2024-01-01T00:00:00Z Ann <ann@example.com>\n",
        "deploy/init.sql": INIT, "revert/init.sql": DESTROY, "a/b.sql": DESTROY,
    })  # fmt: skip
    (folder / "deploy" / "a").mkdir()
    (folder / "deploy" / "a" / "b.sql").write_text(DESTROY)
    conn.execute("CREATE TABLE keep (n int)")
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not a Sqitch change name" in result.stderr or "not a change" in result.stderr
    assert scalar(conn, "SELECT to_regclass('keep')::text") == "keep"


def test_a_deploy_script_that_links_elsewhere_is_refused(conn, dsn, tmp_path):
    folder = tree(tmp_path / "s", {
        "sqitch.plan": "%project=app\n\ninit 2024-01-01T00:00:00Z Ann <ann@example.com>\n",
        "revert/init.sql": DESTROY, "other.sql": DESTROY,
    })  # fmt: skip
    (folder / "deploy").mkdir()
    (folder / "deploy" / "init.sql").symlink_to(folder / "other.sql")
    conn.execute("CREATE TABLE keep (n int)")
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 2 and "is outside" in result.stderr, result.stderr
    (folder / "deploy" / "init.sql").unlink()
    (folder / "deploy" / "init.sql").symlink_to(folder / "revert" / "init.sql")
    result = pgheal("migrate", "--dsn", dsn, str(folder))
    assert result.returncode == 2, result.stderr
    assert scalar(conn, "SELECT to_regclass('keep')::text") == "keep"


@pytest.mark.parametrize(
    ("files", "link"),
    [
        ({"1_init.down.sql": DESTROY}, ("1_init.up.sql", "1_init.down.sql")),
        ({"U1__init.sql": DESTROY}, ("V1__init.sql", "U1__init.sql")),
        ({"0001_init_down.sql": DESTROY}, ("0001_init.sql", "0001_init_down.sql")),
    ],
)
@pytest.mark.parametrize("hard", [False, True])
def test_a_migration_that_links_to_a_down_script_is_refused(conn, dsn, tmp_path, files, link, hard):
    folder = tree(tmp_path / "m", files)
    if hard:
        (folder / link[0]).hardlink_to(folder / link[1])
    else:
        (folder / link[0]).symlink_to(folder / link[1])
    conn.execute("CREATE TABLE keep (n int)")
    for target in (folder, folder / link[0]):
        result = pgheal("migrate", "--dsn", dsn, str(target))
        assert result.returncode == 2, result.stdout + result.stderr
        assert "never runs one" in result.stderr or "no migrations" in result.stderr
    assert scalar(conn, "SELECT to_regclass('keep')::text") == "keep"


@pytest.mark.parametrize(
    "included",
    ["1_init.down.sql", "U1__init.sql", "0001_init.rollback.sql", "revert/init.sql",
     "1700000000000_init/down.sql", "20240101000000_both.sql", "3_c.down.pgsql"],
)  # fmt: skip
def test_an_include_never_reaches_a_down_script(conn, dsn, tmp_path, included):
    text = ("-- migrate:up\nSELECT 1;\n-- migrate:down\n" + DESTROY
            if included.startswith("2024") else DESTROY)  # fmt: skip
    folder = tree(tmp_path / "m", {
        "0001_init.sql": f"\\ir inc/{included}\n", f"inc/{included}": text,
        "inc/sqitch.plan": SQITCH_PLAN,
    })  # fmt: skip
    conn.execute("CREATE TABLE keep (n int)")
    result = pgheal("migrate", "--dsn", dsn, "--layout", "pgheal", str(folder))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"included by {folder / '0001_init.sql'}" in result.stderr
    assert scalar(conn, "SELECT to_regclass('keep')::text") == "keep"
