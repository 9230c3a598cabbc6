"""Other tools' history: what they applied is applied; what pgheal applies, they see.

dbmate runs for real; the other tools' tables are made here with the DDL the tools
themselves run (their own CREATE TABLE), and the rows pgheal writes are checked
field by field against what the tool would write.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from pgheal.history import flyway_checksum

from .conftest import scalar
from .test_installer import pgheal
from .test_layouts import tree
from .test_run import run_tool, tool, tool_env

FIRST = "CREATE TABLE keep (n int);\nINSERT INTO keep VALUES (1), (2);\n"
SECOND = "ALTER TABLE keep ADD COLUMN note text;\n"


def _migrate(dsn, folder, *extra):
    result = pgheal("migrate", "--dsn", dsn, *extra, str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _info(dsn, folder) -> dict[str, dict]:
    result = pgheal("info", "--dsn", dsn, "--json", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    return {row["migration"]: row for row in json.loads(result.stdout)}


def test_what_dbmate_applied_is_applied_and_the_other_way_round(conn, dsn, tmp_path):
    migrations = tmp_path / "db" / "migrations"
    tree(migrations, {
        "20240101000000_keep.sql": f"-- migrate:up\n{FIRST}\n-- migrate:down\nDROP TABLE keep;\n",
    })  # fmt: skip
    dbmate = [tool("dbmate"), "--no-dump-schema"]
    env = tool_env(conn)
    assert run_tool([*dbmate, "up"], env, tmp_path).returncode == 0
    info = _info(dsn, migrations)
    assert info["20240101000000_keep"]["state"] == "applied"
    assert info["20240101000000_keep"]["by"] == "dbmate"
    _migrate(dsn, migrations)  # nothing again: no "relation keep already exists"
    assert scalar(conn, "SELECT count(*) FROM keep") == 2
    tree(migrations, {
        "20240102000000_note.sql": f"-- migrate:up\n{SECOND}\n-- migrate:down\n"
                                   "ALTER TABLE keep DROP COLUMN note;\n",
    })  # fmt: skip
    assert _info(dsn, migrations)["20240102000000_note"]["state"] == "pending"
    _migrate(dsn, migrations)
    status = run_tool([*dbmate, "status"], env, tmp_path)
    assert "[X] 20240102000000_note.sql" in status.stdout and "Pending: 0" in status.stdout
    up = run_tool([*dbmate, "up"], env, tmp_path)
    assert up.returncode == 0 and "Applying" not in up.stdout, up.stdout + up.stderr
    assert _info(dsn, migrations)["20240102000000_note"]["by"] == "pgheal"


TOOLS = {
    "flyway": (
        """CREATE TABLE "public"."flyway_schema_history" (
            "installed_rank" INT NOT NULL, "version" VARCHAR(50),
            "description" VARCHAR(200) NOT NULL, "type" VARCHAR(20) NOT NULL,
            "script" VARCHAR(1000) NOT NULL, "checksum" INTEGER,
            "installed_by" VARCHAR(100) NOT NULL,
            "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
            "execution_time" INTEGER NOT NULL, "success" BOOLEAN NOT NULL);
        ALTER TABLE "public"."flyway_schema_history"
            ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
        INSERT INTO flyway_schema_history VALUES
            (1, '1', 'first keep', 'SQL', 'V1__first_keep.sql', 1, 'x', now(), 3, true);""",
        {"V1__first_keep.sql": FIRST, "V1_1__second_note.sql": SECOND},
        "SELECT installed_rank, version, description, type, script, checksum, success "
        "FROM flyway_schema_history ORDER BY installed_rank DESC LIMIT 1",
        (2, "1.1", "second note", "SQL", "V1_1__second_note.sql", flyway_checksum(SECOND), True),
    ),
    "golang-migrate": (
        """CREATE TABLE "public"."schema_migrations" (version bigint not null primary key,
                                                      dirty boolean not null);
        INSERT INTO schema_migrations VALUES (1, false);""",
        {"1_first.up.sql": FIRST, "1_first.down.sql": "DROP TABLE keep;",
         "2_second.up.sql": SECOND},
        "SELECT array_agg(version || ' ' || dirty) FROM schema_migrations",
        (["2 false"],),
    ),
    "prisma": (
        """CREATE TABLE _prisma_migrations (
            id VARCHAR(36) PRIMARY KEY NOT NULL, checksum VARCHAR(64) NOT NULL,
            finished_at TIMESTAMPTZ, migration_name VARCHAR(255) NOT NULL, logs TEXT,
            rolled_back_at TIMESTAMPTZ, started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            applied_steps_count INTEGER NOT NULL DEFAULT 0);
        INSERT INTO _prisma_migrations (id, checksum, finished_at, migration_name)
            VALUES ('a', 'x', now(), '20240101000000_first');""",
        {"migration_lock.toml": 'provider = "postgresql"\n',
         "20240101000000_first/migration.sql": FIRST,
         "20240102000000_second/migration.sql": SECOND},
        "SELECT checksum, finished_at IS NOT NULL, rolled_back_at IS NULL, applied_steps_count "
        "FROM _prisma_migrations WHERE migration_name = '20240102000000_second'",
        (hashlib.sha256(SECOND.encode()).hexdigest(), True, True, 1),
    ),
    "supabase": (
        """CREATE SCHEMA IF NOT EXISTS supabase_migrations;
        CREATE TABLE supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY,
                                                            statements text[], name text);
        INSERT INTO supabase_migrations.schema_migrations (version, name)
            VALUES ('20240101000000', 'first');""",
        {"20240101000000_first.sql": FIRST, "20240102000000_second.sql": SECOND},
        "SELECT version, name FROM supabase_migrations.schema_migrations ORDER BY version DESC "
        "LIMIT 1",
        ("20240102000000", "second"),
    ),
    "hasura": (
        """CREATE SCHEMA hdb_catalog;
        CREATE TABLE hdb_catalog.schema_migrations (version bigint not null primary key,
                                                    dirty boolean not null);
        INSERT INTO hdb_catalog.schema_migrations VALUES (1700000000000, false);""",
        {"1700000000000_first/up.sql": FIRST, "1700000000000_first/down.sql": "DROP TABLE keep;",
         "1700000000001_second/up.sql": SECOND},
        "SELECT version, dirty FROM hdb_catalog.schema_migrations ORDER BY version DESC LIMIT 1",
        (1700000000001, False),
    ),
    "hasura-v3": (  # Hasura v2 servers, config v3: one JSON map, per source
        """CREATE SCHEMA hdb_catalog;
        CREATE TABLE hdb_catalog.hdb_version (
            hasura_uuid uuid PRIMARY KEY DEFAULT gen_random_uuid(), version text NOT NULL,
            upgraded_on timestamptz NOT NULL, cli_state jsonb NOT NULL DEFAULT '{}'::jsonb,
            console_state jsonb NOT NULL DEFAULT '{}'::jsonb);
        CREATE UNIQUE INDEX hdb_version_one_row ON hdb_catalog.hdb_version((version IS NOT NULL));
        INSERT INTO hdb_catalog.hdb_version (version, upgraded_on, cli_state) VALUES ('48', now(),
            '{"settings": {"migration_mode": "true"}, "isStateCopyCompleted": true,
              "migrations": {"default": {"1700000000000": false}, "other": {"1": true}}}');""",
        {"migrations/default/1700000000000_first/up.sql": FIRST,
         "migrations/default/1700000000000_first/down.sql": "DROP TABLE keep;",
         "migrations/default/1700000000001_second/up.sql": SECOND},
        "SELECT cli_state FROM hdb_catalog.hdb_version",
        ({"settings": {"migration_mode": "true"}, "isStateCopyCompleted": True,
          "migrations": {"default": {"1700000000000": False, "1700000000001": False},
                         "other": {"1": True}}},),
    ),
    "graphile-migrate": (
        """CREATE SCHEMA graphile_migrate;
        CREATE TABLE graphile_migrate.migrations (hash text primary key,
            previous_hash text references graphile_migrate.migrations, filename text not null,
            date timestamptz not null default now());
        INSERT INTO graphile_migrate.migrations VALUES ('sha1:aaaa', NULL, '000001.sql');""",
        {"committed/000001.sql": f"--! Previous: -\n--! Hash: sha1:aaaa\n\n{FIRST}",
         "committed/000002.sql": f"--! Previous: sha1:aaaa\n--! Hash: sha1:bbbb\n\n{SECOND}"},
        "SELECT hash, previous_hash, filename FROM graphile_migrate.migrations "
        "ORDER BY filename DESC LIMIT 1",
        ("sha1:bbbb", "sha1:aaaa", "000002.sql"),
    ),
}  # fmt: skip


def migrations_of(layout: str, root: Path) -> Path:
    """The folder of a TOOLS entry's tree that pgheal is pointed at."""
    return root / "migrations" / "default" if layout == "hasura-v3" else root


@pytest.mark.parametrize("layout", TOOLS)
def test_a_tools_history_is_read_and_written_in_its_format(conn, dsn, tmp_path, layout):
    ddl, files, query, expected = TOOLS[layout]
    conn.execute(ddl)
    conn.execute(FIRST)  # what the tool applied
    folder = migrations_of(layout, tree(tmp_path / layout, files))
    first = next(iter(_info(dsn, folder).values()))
    assert first["state"] == "applied" and first["by"] == layout.removesuffix("-v3")
    _migrate(dsn, folder)
    assert scalar(conn, "SELECT count(*) FROM keep") == 2  # the first did not run again
    assert conn.execute(query).fetchone() == expected
    assert {row["state"] for row in _info(dsn, folder).values()} == {"applied"}
    _migrate(dsn, folder)  # and nothing a second time
    assert conn.execute(query).fetchone() == expected


def test_a_changed_migration_is_named_and_forced(conn, dsn, tmp_path):
    folder = tree(tmp_path / "m", {"0001_keep.sql": FIRST})
    _migrate(dsn, folder)
    (folder / "0001_keep.sql").write_text(FIRST + "INSERT INTO keep VALUES (3);\n")
    assert _info(dsn, folder)["0001_keep"]["state"] == "changed"
    refused = pgheal("migrate", "--dsn", dsn, str(folder))
    assert refused.returncode == 1, refused.stdout
    # The advice is a command that works as written: the same command, forced.
    advice = next(line for line in refused.stdout.splitlines() if "run it again anyway:" in line)
    argv = shlex.split(advice.split("anyway: ", 1)[1])
    assert argv == ["pgheal", "migrate", "--dsn", dsn, str(folder), "--force", "0001_keep"]
    conn.execute("DROP TABLE keep")
    forced = pgheal(*argv[1:])
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert scalar(conn, "SELECT count(*) FROM keep") == 3
    assert _info(dsn, folder)["0001_keep"]["state"] == "applied"
    unknown = pgheal("migrate", "--dsn", dsn, "--force", "0009_nope", str(folder))
    assert unknown.returncode == 2 and "no such migration" in unknown.stderr


def test_info_names_failed_and_pending(conn, dsn, tmp_path):
    folder = tree(tmp_path / "m", {"0001_bad.sql": "SELECT nothing_provides_this();",
                                   "0002_later.sql": "SELECT 1;"})  # fmt: skip
    assert pgheal("migrate", "--dsn", dsn, str(folder)).returncode == 1
    info = _info(dsn, folder)
    assert (info["0001_bad"]["state"], info["0002_later"]["state"]) == ("failed", "pending")


def test_flyway_checksums_ignore_line_ends_and_a_byte_order_mark():
    assert (
        flyway_checksum("a\r\nb\r\n")
        == flyway_checksum("a\nb\n")
        == flyway_checksum("\ufeffa\nb\n")
    )
    assert -(2**31) <= flyway_checksum("é" * 1000) < 2**31
    assert flyway_checksum("") == 0


PLAN = """%syntax-version=1.0.0
%project=flipr

create_a 2026-12-02T07:56:01Z Test User <test@example.com> # Add table a.
create_b [create_a] 2026-12-02T07:56:01Z Test User <test@example.com> # Add table b.
"""


def test_sqitch_change_ids_are_sqitchs_own(tmp_path):
    from pgheal.history import sqitch_change_id
    from pgheal.layouts import read_folder

    folder = tree(tmp_path, {"sqitch.plan": PLAN, "deploy/create_a.sql": "SELECT 1;",
                             "deploy/create_b.sql": "SELECT 2;"})  # fmt: skip
    ids = [sqitch_change_id(m.plan) for m in read_folder(folder).migrations]
    # As Sqitch 1.3.1 wrote them into sqitch.changes for this very plan.
    assert ids == ["010efb9e4f4ec897d8c8a6544bf97737570621ce",
                   "7faa600bfd2b85f6a35088e9b0d9654618a97c46"]  # fmt: skip


def test_what_sqitch_deployed_is_applied_and_the_other_way_round(conn, dsn, tmp_path):
    plan, first_change = PLAN.split("\ncreate_b")[0] + "\n", "CREATE TABLE a (id int);\n"
    tree(tmp_path, {
        "sqitch.conf": "[core]\n    engine = pg\n", "sqitch.plan": plan,
        "deploy/create_a.sql": f"BEGIN;\n{first_change}COMMIT;\n",
        "revert/create_a.sql": "BEGIN;\nDROP TABLE a;\nCOMMIT;\n",
    })  # fmt: skip
    env = {**tool_env(conn), "SQITCH_USER_CONFIG": str(tmp_path / "user.conf"),
           "SQITCH_FULLNAME": "Test", "SQITCH_EMAIL": "test@example.com"}  # fmt: skip
    target = f"db:pg:{conn.info.dbname}"
    deployed = run_tool([tool("sqitch"), "deploy", target], env, tmp_path)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert _info(dsn, tmp_path)["create_a"]["by"] == "sqitch"
    _migrate(dsn, tmp_path)  # nothing again
    tree(tmp_path, {"sqitch.plan": PLAN, "deploy/create_b.sql": "CREATE TABLE b (id int);\n",
                    "revert/create_b.sql": "DROP TABLE b;\n"})  # fmt: skip
    _migrate(dsn, tmp_path)
    assert scalar(conn, "SELECT to_regclass('b')::text") == "b"
    status = run_tool([tool("sqitch"), "status", target], env, tmp_path)
    assert status.returncode == 0 and "Nothing to deploy" in status.stdout, status.stdout
    again = run_tool([tool("sqitch"), "deploy", target], env, tmp_path)
    assert again.returncode == 0 and "Nothing to deploy" in again.stdout, again.stdout
    log = run_tool([tool("sqitch"), "log", target], env, tmp_path)
    assert "create_b" in log.stdout


def test_baseline_records_what_was_applied_by_hand(conn, dsn, tmp_path, app_role):
    folder = tree(tmp_path / "m", {"0001_keep.sql": FIRST, "0002_note.sql": SECOND,
                                   "0003_more.sql": "INSERT INTO keep VALUES (3);"})  # fmt: skip
    conn.execute(FIRST)
    conn.execute(SECOND)  # by hand, before pgheal
    result = pgheal("baseline", "--dsn", dsn, "--to", "0002_note", str(folder))
    assert result.returncode == 0 and "2 migrations" in result.stdout, result.stderr
    info = _info(dsn, folder)
    assert [info[n]["state"] for n in ("0001_keep", "0002_note", "0003_more")] == [
        "applied", "applied", "pending",
    ]  # fmt: skip
    _migrate(dsn, folder)
    assert scalar(conn, "SELECT count(*) FROM keep") == 3
    assert scalar(conn, "SELECT count(*) FROM heal.migrations WHERE source = 'baseline'") == 2
    # A role with fewer rights cannot make a superuser skip a migration by baselining it.
    conn.execute(f"GRANT heal_operator TO {app_role}")
    other = tree(tmp_path / "o", {"0001_other.sql": "CREATE TABLE other (x int);"})
    role_dsn = dsn.replace("user=postgres", f"user={app_role}")
    assert pgheal("baseline", "--dsn", role_dsn, str(other)).returncode == 0
    assert _info(dsn, other)["0001_other"]["state"] == "pending"
    _migrate(dsn, other)
    assert scalar(conn, "SELECT to_regclass('other')::text") == "other"


def test_what_yoyo_applied_is_applied_and_the_other_way_round(conn, dsn, tmp_path):
    folder = tree(
        tmp_path / "migrations",
        {"0001_keep.sql": FIRST, "0001_keep.rollback.sql": "DROP TABLE keep;"},
    )
    info = conn.info
    database = f"postgresql+psycopg://{info.user}@/{info.dbname}?host={info.host}&port={info.port}"
    yoyo = [tool("yoyo"), "--batch", "--no-config-file"]
    applied = run_tool([*yoyo, "apply", "--database", database, str(folder)], {}, tmp_path)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert _info(dsn, folder)["0001_keep"]["by"] == "yoyo"
    _migrate(dsn, folder)  # nothing again
    tree(folder, {"0002_note.sql": f"-- depends: 0001_keep\n{SECOND}",
                  "0002_note.rollback.sql": "ALTER TABLE keep DROP COLUMN note;"})  # fmt: skip
    _migrate(dsn, folder)
    listed = run_tool([*yoyo, "list", "--database", database, str(folder)], {}, tmp_path)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines() if "0002_note" in line]
    assert rows and rows[0][0] == "A", listed.stdout  # yoyo's own "applied"
    again = run_tool([*yoyo, "apply", "--database", database, str(folder)], {}, tmp_path)
    assert again.returncode == 0 and scalar(conn, "SELECT count(*) FROM keep") == 2


def test_pgheal_info_agrees_with_alembic_and_leaves_its_python_to_it(conn, dsn, tmp_path):
    from .test_run import ALEMBIC_ENV

    info = conn.info
    url = f"postgresql+psycopg://{info.user}@/{info.dbname}?host={info.host}&port={info.port}"
    revision = ("revision: str = {rev!r}\ndown_revision: str | None = {down!r}\n"
                "from alembic import op\n\ndef upgrade():\n    op.execute({sql!r})\n\n"
                "def downgrade():\n    op.execute('SELECT 1')\n")  # fmt: skip
    tree(tmp_path, {
        "alembic.ini": f"[alembic]\nscript_location = migrations\nsqlalchemy.url = {url}\n",
        "migrations/env.py": ALEMBIC_ENV, "migrations/script.py.mako": "",
        "migrations/versions/a1_keep.py": revision.format(rev="a1", down=None, sql=FIRST),
        "migrations/versions/b2_note.py": revision.format(rev="b2", down="a1", sql=SECOND),
    })  # fmt: skip
    first = run_tool([tool("alembic"), "upgrade", "a1"], {}, tmp_path)
    assert first.returncode == 0, first.stderr
    state = _info(dsn, tmp_path)
    assert (state["a1"]["state"], state["a1"]["by"], state["b2"]["state"]) == (
        "applied", "alembic", "pending",
    )  # fmt: skip
    refused = pgheal("migrate", "--dsn", dsn, str(tmp_path))
    assert refused.returncode == 2 and "pgheal run -- alembic upgrade head" in refused.stderr
    assert run_tool([tool("alembic"), "upgrade", "head"], {}, tmp_path).returncode == 0
    assert {row["state"] for row in _info(dsn, tmp_path).values()} == {"applied"}
    _migrate(dsn, tmp_path)  # nothing left for it to run
