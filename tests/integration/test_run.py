"""pgheal run -- TOOL: real migration tools, healed around, run again.

The migrations here fail only at run time (DML, a DO block), where no event trigger
fires: the tool fails, pgheal reads the error from the server log, heals it within
the policy of the tool's role, and runs the tool again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from .conftest import connect, role_dsn, scalar
from .test_installer import pgheal
from .test_layouts import tree

#: DML alone: with DDL in the same query string, the DDL trigger would see it coming.
TABLE = "CREATE TABLE tokens (token bytea NOT NULL);\n"
SEED = "INSERT INTO tokens SELECT gen_random_bytes(16) FROM generate_series(1, 3);\n"


def tool(name: str) -> str:
    """The tool's executable: the venv's own (PyPI packages) or the system's (Debian)."""
    here = Path(sys.executable).with_name(name)
    found = str(here) if here.exists() else shutil.which(name)
    assert found, f"{name} is not installed: make test installs it"
    return found


def tool_env(conn, user: str | None = None) -> dict[str, str]:
    """libpq's environment and a DATABASE_URL for the test database, as tools read them."""
    info = conn.info
    user = user or info.user
    return {
        "PGHOST": info.host, "PGPORT": str(info.port), "PGDATABASE": info.dbname,
        "PGUSER": user,
        "DATABASE_URL": f"postgres://{user}@/{info.dbname}?host={info.host}&port={info.port}"
                        "&sslmode=disable",
    }  # fmt: skip


def run_tool(command: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **env})  # fmt: skip


def heal_run(dsn: str, command: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return run_tool([sys.executable, "-m", "pgheal.cli", "run", "--dsn", dsn, "--", *command],
                    env, cwd)  # fmt: skip


def pgcrypto(conn) -> bool:
    return bool(scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'"))


def test_dbmate_up_fails_plain_and_heals_around(conn, dsn, tmp_path):
    tree(tmp_path, {
        "db/migrations/20240101000000_table.sql":
            f"-- migrate:up\n{TABLE}\n-- migrate:down\nDROP TABLE tokens;\n",
        "db/migrations/20240102000000_seed.sql":
            f"-- migrate:up\n{SEED}\n-- migrate:down\nDELETE FROM tokens;\n",
    })  # fmt: skip
    dbmate = [tool("dbmate"), "--no-dump-schema", "up"]
    env = tool_env(conn)
    plain = run_tool(dbmate, env, tmp_path)
    assert plain.returncode != 0 and "gen_random_bytes" in plain.stdout + plain.stderr
    assert not pgcrypto(conn)
    healed = heal_run(dsn, dbmate, env, tmp_path)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert "Applying: 20240102000000_seed.sql" in healed.stdout  # the tool's own output
    assert "healed:" in healed.stderr
    assert "CREATE EXTENSION IF NOT EXISTS pgcrypto" in healed.stderr
    assert pgcrypto(conn)
    assert scalar(conn, "SELECT count(*) FROM tokens") == 3
    assert scalar(conn, "SELECT max(version) FROM schema_migrations") == "20240102000000"
    event = conn.execute(
        "SELECT source, detail ->> 'tool', detail ->> 'way', fix_sql FROM heal.build_events "
        "WHERE event_type = 'auto_heal_success'"
    ).fetchone()
    assert event[:3] == ("run", " ".join(dbmate), "run") and "pgcrypto" in event[3]
    assert scalar(conn, "SELECT source FROM heal.migrations") == "run"
    again = heal_run(dsn, dbmate, env, tmp_path)
    assert again.returncode == 0 and "pgheal run" not in again.stderr


def test_sqitch_deploy_fails_plain_and_heals_around(conn, dsn, tmp_path):
    tree(tmp_path, {
        "sqitch.conf": "[core]\n    engine = pg\n",
        "sqitch.plan": "%syntax-version=1.0.0\n%project=app\n\n"
                       "tokens 2024-01-01T00:00:00Z Ann <ann@example.com> # the table\n"
                       "seed [tokens] 2024-01-02T00:00:00Z Ann <ann@example.com> # rows\n",
        "deploy/tokens.sql": f"BEGIN;\n{TABLE}COMMIT;\n",
        "deploy/seed.sql": f"BEGIN;\n{SEED}COMMIT;\n",
        "revert/tokens.sql": "BEGIN;\nDROP TABLE tokens;\nCOMMIT;\n",
        "revert/seed.sql": "BEGIN;\nDELETE FROM tokens;\nCOMMIT;\n",
        "verify/tokens.sql": "SELECT token FROM tokens WHERE false;\n",
    })  # fmt: skip
    env = {**tool_env(conn), "SQITCH_USER_CONFIG": str(tmp_path / "user.conf"),
           "SQITCH_FULLNAME": "Test", "SQITCH_EMAIL": "test@example.com"}  # fmt: skip
    deploy = [tool("sqitch"), "deploy", f"db:pg:{conn.info.dbname}"]
    plain = run_tool(deploy, env, tmp_path)
    assert plain.returncode != 0 and "gen_random_bytes" in plain.stdout + plain.stderr
    healed = heal_run(dsn, deploy, env, tmp_path)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert pgcrypto(conn)
    assert scalar(conn, "SELECT count(*) FROM tokens") == 3
    status = run_tool([tool("sqitch"), "status", f"db:pg:{conn.info.dbname}"], env, tmp_path)
    assert status.returncode == 0 and "Nothing to deploy" in status.stdout, status.stdout


def test_a_heal_the_policy_refuses_keeps_the_tools_exit_code(conn, dsn, tmp_path):
    command = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", "SELECT dblink_connect('x')"]
    result = heal_run(dsn, command, tool_env(conn), tmp_path)
    assert result.returncode == 1  # psql's own
    assert "function dblink_connect(unknown) does not exist" in result.stderr
    assert "not healed" in result.stderr and "dblink" in result.stderr
    assert scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'dblink'") == 0
    row = conn.execute(
        "SELECT status, source, error FROM heal.migrations ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row[:2] == ("failed", "run") and "dblink" in row[2]


DO_BLOCK = ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-c",
            "DO $$ BEGIN PERFORM gen_random_bytes(4); END $$"]  # fmt: skip


def test_a_role_gets_no_heal_it_could_not_do_by_hand(conn, dsn, tmp_path, app_role):
    conn.execute(f"GRANT heal_operator TO {app_role}")
    result = heal_run(role_dsn(dsn, app_role), DO_BLOCK, tool_env(conn, app_role), tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not healed" in result.stderr and "CREATE" in result.stderr
    assert not pgcrypto(conn)


def test_a_do_block_heals_for_the_database_owner(conn, dsn, tmp_path, app_role):
    conn.execute(f"GRANT heal_operator TO {app_role}")
    conn.execute(f"ALTER DATABASE {conn.info.dbname} OWNER TO {app_role}")
    result = heal_run(role_dsn(dsn, app_role), DO_BLOCK, tool_env(conn, app_role), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert pgcrypto(conn)
    assert scalar(conn, "SELECT run_by FROM heal.migrations WHERE source = 'run'") == app_role


def test_a_role_never_sees_another_roles_errors(conn, dsn, app_role):
    conn.execute(f"GRANT heal_operator TO {app_role}")
    with connect(role_dsn(dsn, app_role)) as session:
        position = scalar(session, "SELECT heal.log_position()")
        assert position is not None
        with pytest.raises(Exception, match="gen_random_bytes"):
            conn.execute("SELECT gen_random_bytes(4) AS superuser_secret")
        with pytest.raises(Exception, match="gen_random_bytes"):
            session.execute("SELECT gen_random_bytes(8)")
        for _ in range(50):
            rows = session.execute(
                "SELECT user_name, message FROM heal.errors_since(%s)", (position,)
            ).fetchall()
            if rows:
                break
            session.execute("SELECT pg_sleep(0.1)")
        assert rows == [(app_role, "function gen_random_bytes(integer) does not exist")]
        with pytest.raises(Exception, match="not a position"):
            session.execute("SELECT * FROM heal.errors_since('../../etc/passwd')")
    with connect(dsn) as admin:
        users = {r[0] for r in admin.execute(
            "SELECT user_name FROM heal.errors_since(%s)", (position,))}  # fmt: skip
        assert users == {"postgres", app_role}


def test_errors_of_a_role_dropped_since_are_left_out(conn, dsn):
    gone = f"gone_{os.getpid()}"
    conn.execute(f"CREATE ROLE {gone} LOGIN")
    position = scalar(conn, "SELECT heal.log_position()")
    with connect(role_dsn(dsn, gone)) as session, pytest.raises(psycopg.errors.UndefinedFunction):
        session.execute("SELECT gen_random_bytes(2)")
    with pytest.raises(Exception, match="gen_random_bytes"):
        conn.execute("SELECT gen_random_bytes(3)")
    conn.execute(f"DROP ROLE {gone}")
    for _ in range(50):
        rows = conn.execute("SELECT message FROM heal.errors_since(%s)", (position,)).fetchall()
        if rows:
            break
        conn.execute("SELECT pg_sleep(0.1)")
    assert rows == [("function gen_random_bytes(integer) does not exist",)]


@pytest.mark.parametrize("offset", ["Infinity", "1e400", "NaN", "-1", '"x"'])
def test_a_made_up_position_is_a_clean_error(conn, offset):
    name = json.loads(scalar(conn, "SELECT heal.log_position()"))[0]
    position = f'["{name}", {offset}, 0, 0]'
    try:
        rows = conn.execute("SELECT * FROM heal.errors_since(%s)", (position,)).fetchall()
    except psycopg.Error as exc:
        assert exc.diag.sqlstate == "22023", exc
    else:
        assert rows == []


def test_healing_for_a_role_that_does_not_exist_is_a_clean_error(conn):
    with pytest.raises(psycopg.errors.UndefinedObject, match='role "nosuch" does not exist'):
        conn.execute("SELECT heal.heal_error('42883', 'function f() does not exist', "
                     "'nosuch', NULL)")  # fmt: skip


def test_a_missing_command_is_a_clean_error(dsn, tmp_path):
    result = pgheal("run", "--dsn", dsn, "--", str(tmp_path / "no-such-tool"))
    assert result.returncode == 2 and "no such command" in result.stderr
    assert "Traceback" not in result.stderr
    nothing = pgheal("run", "--dsn", dsn)
    assert nothing.returncode == 2 and "name the command" in nothing.stderr


def test_golang_migrates_dirty_version_is_cleared_when_its_file_was_undone(conn, tmp_path):
    from pgheal.around import unblock

    folder = tree(tmp_path / "m", {f"{v}_x{v}.up.sql": "SELECT 1;" for v in (1, 2, 5)})
    conn.execute("CREATE TABLE schema_migrations (version bigint NOT NULL, dirty boolean)")
    conn.execute("INSERT INTO schema_migrations VALUES (5, true)")
    notes = unblock(conn, ["migrate", "-path", str(folder), "-database", "x", "up"])
    assert "dirty version 5 cleared" in notes[0]
    assert conn.execute("SELECT version, dirty FROM schema_migrations").fetchall() == [(2, False)]
    conn.execute("UPDATE schema_migrations SET version = 7, dirty = true")
    multi = unblock(conn, ["migrate", "-path", str(folder), "-database", "x?x-multi-statement=true",
                           "up"])  # fmt: skip
    assert "migrate force" in multi[0]
    assert conn.execute("SELECT version, dirty FROM schema_migrations").fetchall() == [(7, True)]


def test_prismas_failed_row_is_resolved_as_rolled_back(conn):
    from pgheal.around import unblock

    conn.execute("""CREATE TABLE _prisma_migrations (
        id varchar(36) PRIMARY KEY, checksum varchar(64) NOT NULL, finished_at timestamptz,
        migration_name varchar(255) NOT NULL, logs text, rolled_back_at timestamptz,
        started_at timestamptz NOT NULL DEFAULT now(), applied_steps_count integer DEFAULT 0)""")
    conn.execute("INSERT INTO _prisma_migrations (id, checksum, migration_name, finished_at) "
                 "VALUES ('a', 'x', '1_ok', now()), ('b', 'y', '2_failed', NULL)")  # fmt: skip
    assert "2_failed resolved as rolled back" in unblock(conn, ["prisma", "migrate", "deploy"])[0]
    assert scalar(conn, "SELECT count(*) FROM _prisma_migrations WHERE rolled_back_at IS NOT NULL"
                  ) == 1  # fmt: skip


ALEMBIC_ENV = """from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
engine = engine_from_config(config.get_section(config.config_ini_section), poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""


def test_alembic_upgrade_fails_plain_and_heals_around(conn, dsn, tmp_path):
    info = conn.info
    url = f"postgresql+psycopg://{info.user}@/{info.dbname}?host={info.host}&port={info.port}"
    tree(tmp_path, {
        "alembic.ini": f"[alembic]\nscript_location = migrations\nsqlalchemy.url = {url}\n",
        "migrations/env.py": ALEMBIC_ENV,
        "migrations/script.py.mako": "",
        "migrations/versions/0001_tokens.py":
            "revision = '0001'\ndown_revision = None\nfrom alembic import op\n\n"
            f"def upgrade():\n    op.execute({TABLE!r})\n    op.execute({SEED!r})\n\n"
            "def downgrade():\n    op.execute('DROP TABLE tokens')\n",
    })  # fmt: skip
    upgrade = [tool("alembic"), "upgrade", "head"]
    plain = run_tool(upgrade, {}, tmp_path)
    assert plain.returncode != 0 and "gen_random_bytes" in plain.stderr, plain.stderr
    healed = heal_run(dsn, upgrade, {}, tmp_path)
    assert healed.returncode == 0, healed.stdout + healed.stderr
    assert scalar(conn, "SELECT count(*) FROM tokens") == 3
    assert scalar(conn, "SELECT version_num FROM alembic_version") == "0001"
