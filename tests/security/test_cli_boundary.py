"""The CLI, run by a superuser in a database some other role owns: that owner's
search_path never reaches pgheal's own queries; pg_cron's jobs never serve a database
made again under a dropped one's name; a kept history is adopted only if nobody else
could have written it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from pgheal import schedule

from ..integration.conftest import connect, scalar
from ..integration.test_installer import pgheal

#: Functions and an operator that shadow pg_catalog's on the owner's path, and record
#: whoever calls them.
TRAPS = """
CREATE TABLE public.trap (who name, what text);
GRANT INSERT ON public.trap TO PUBLIC;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql
    AS $$ INSERT INTO public.trap VALUES (current_user, 'now'); SELECT pg_catalog.now() $$;
CREATE FUNCTION public.to_regproc(text) RETURNS regproc LANGUAGE sql
    AS $$ INSERT INTO public.trap VALUES (current_user, 'to_regproc');
          SELECT pg_catalog.to_regproc($1) $$;
CREATE FUNCTION public.to_regclass(text) RETURNS regclass LANGUAGE sql
    AS $$ INSERT INTO public.trap VALUES (current_user, 'to_regclass');
          SELECT pg_catalog.to_regclass($1) $$;
CREATE FUNCTION public.trap_eq(text, text) RETURNS boolean LANGUAGE sql
    AS $$ INSERT INTO public.trap VALUES (current_user, '=');
          SELECT $1 OPERATOR(pg_catalog.=) $2 $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.trap_eq);
CREATE FUNCTION public.trap_check(what text) RETURNS boolean LANGUAGE sql
    AS $$ INSERT INTO public.trap VALUES (current_user, what); SELECT true $$;
""" + "".join(
    # Types pgheal's own queries name: a value passed through the domain runs its CHECK.
    f"CREATE DOMAIN public.{t} AS pg_catalog.{t} CHECK (public.trap_check('{t}'));\n"
    for t in ("text", "jsonb", "name", "int4", "int8", "oid", "bool", "float8", "numeric")
)


def _dsn(conn, dbname: str) -> str:
    info = conn.info
    return f"host={info.host} port={info.port} user=postgres dbname={dbname}"


@pytest.fixture
def owned(conn) -> Iterator[tuple[str, str]]:
    """A database owned by a role that is not a superuser (with CREATEDB), pgheal
    installed and scheduled in it by a superuser: (database, owner)."""
    owner = f"owner_{uuid.uuid4().hex[:8]}"
    name = f"owned_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {owner} LOGIN CREATEDB")
    conn.execute(f"CREATE DATABASE {name} OWNER {owner}")
    done = pgheal("install", "--dsn", _dsn(conn, name))
    assert done.returncode == 0, done.stderr
    yield name, owner
    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    pgheal("unschedule", "--orphans", "--dsn", _dsn(conn, "postgres"))
    conn.execute(f"DROP OWNED BY {owner}")
    conn.execute(f"DROP ROLE {owner}")


def test_the_owner_s_search_path_never_reaches_pgheal_s_queries(conn, owned, tmp_path):
    name, owner = owned
    dsn = _dsn(conn, name)
    with connect(make_conninfo(dsn, user=owner)) as mine:
        mine.execute(TRAPS)
        mine.execute(f"ALTER DATABASE {name} SET search_path = public, pg_catalog")
    (tmp_path / "0001_t.sql").write_text("CREATE TABLE t (e citext);")
    folder = str(tmp_path)
    tool_error = "echo 'ERROR:  type \"citext\" does not exist' >&2; exit 1"
    commands = (["doctor"], ["status"], ["events", "--since", "1h"], ["patterns", "list"],
                ["info", folder], ["plan", folder], ["migrate", "--dry-run", folder],
                ["migrate", folder], ["run", "--attempts", "1", "--", "sh", "-c", tool_error],
                ["unschedule", "--orphans"], ["schedule"],
                ["install", "--no-schedule"])  # fmt: skip
    for args in commands:
        result = pgheal("--json", "--dsn", dsn, *args)
        assert result.returncode in (0, 1), (args, result.stderr)
    with connect(dsn) as db:
        assert scalar(db, "SELECT count(*) FROM public.trap") == 0
        assert scalar(db, "SELECT to_regclass('public.t') IS NOT NULL")  # the migration ran
    assert not scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (owner,))


def test_a_database_made_again_under_a_dropped_one_s_name_gets_no_scan(conn, owned):
    name, owner = owned
    cron_dsn = _dsn(conn, "postgres")
    with connect(cron_dsn) as cron:
        command = scalar(cron, "SELECT command FROM cron.job WHERE jobname = %s",
                         (f"heal-autonomous-scan:{name}",))  # fmt: skip
    # The owner drops its database and makes another of that name, with a heal.scan
    # of its own that would make it a superuser.
    with connect(make_conninfo(cron_dsn, user=owner)) as mine:
        mine.execute(f"DROP DATABASE {name} WITH (FORCE)")
        mine.execute(f"CREATE DATABASE {name}")
    with connect(make_conninfo(_dsn(conn, name), user=owner)) as mine:
        mine.execute("CREATE SCHEMA heal")
        mine.execute(f"CREATE PROCEDURE heal.scan() LANGUAGE sql AS $$ ALTER ROLE {owner} "
                     "SUPERUSER $$")  # fmt: skip
    # What pg_cron would run there, as the superuser that scheduled it.
    with connect(_dsn(conn, name)) as there, pytest.raises(psycopg.errors.RaiseException) as info:
        there.execute(command)
    assert "is not the one this scan was scheduled for" in str(info.value)
    assert not scalar(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (owner,))
    # The janitor removes the job, as doctor names it.
    doctor = json.loads(pgheal("doctor", "--json", "--dsn", _dsn(conn, conn.info.dbname)).stdout)
    jobs = next(c for c in doctor["checks"] if c["name"] == "cron_jobs")
    assert "the one of that name now is another" in jobs["detail"]
    with connect(cron_dsn) as cron:
        cron.execute(schedule.JANITOR_COMMAND)
        assert scalar(cron, "SELECT count(*) FROM cron.job WHERE database = %s", (name,)) == 0


def test_a_kept_history_is_adopted_only_when_only_superusers_could_write_it(conn, owned):
    name, owner = owned
    dsn = _dsn(conn, name)
    assert pgheal("uninstall", "--yes", "--dsn", dsn).returncode == 0
    with connect(dsn) as db:  # a column grant is a way in too
        db.execute(f"GRANT USAGE ON SCHEMA heal_history TO {owner}")
        db.execute(f"GRANT SELECT (id), UPDATE (status, error) ON heal_history.migrations "
                   f"TO {owner}")  # fmt: skip
    refused = pgheal("install", "--dsn", dsn)
    assert refused.returncode == 2, refused.stdout
    assert 'schema "heal_history" holds a kept migration history' in refused.stderr
    with connect(dsn) as db:
        assert scalar(db, "SELECT to_regnamespace('heal')") is None
        db.execute("DROP SCHEMA heal_history CASCADE")
    # A heal_history another role made is not pgheal's: left alone, and said so.
    with connect(make_conninfo(dsn, user=owner)) as mine:
        mine.execute("CREATE SCHEMA heal_history")
    again = pgheal("install", "--dsn", dsn)
    assert again.returncode == 0, again.stderr
    assert f'schema "heal_history" belongs to role "{owner}"' in again.stdout


def test_a_change_undone_since_teaches_nothing(conn, dsn):
    conn.execute("SELECT heal.skip_log_backlog()")
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'create_schemas'")
    with connect(dsn) as app, pytest.raises(psycopg.Error):
        app.execute("CREATE TABLE foo_missing.t ()")
    for _ in range(600):
        conn.execute("CALL heal.scan()")
        if scalar(conn, "SELECT count(*) FROM heal.error_fingerprints"):
            break
    conn.execute("CREATE SCHEMA foo_missing")
    conn.execute("DROP SCHEMA foo_missing")
    conn.execute("CALL heal.scan()")
    assert scalar(conn, "SELECT count(*) FROM heal.learned_patterns") == 0
    assert scalar(conn, "SELECT fixed_at IS NULL FROM heal.error_fingerprints")
    assert scalar(conn, "SELECT count(*) FROM heal.failures") == 1


def test_an_operator_s_doctor_says_pg_cron_is_a_superuser_s_to_check(conn, dsn):
    role = f"op_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN IN ROLE heal_operator")
    doctor = pgheal("doctor", "--json", "--dsn", make_conninfo(dsn, user=role))
    assert "Traceback" not in doctor.stderr and doctor.returncode in (0, 1), doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["cron_runs"]["status"] == "ok"
    assert "visible to superusers only" in checks["cron_runs"]["detail"]
    scheduled = pgheal("schedule", "--dsn", make_conninfo(dsn, user=role))
    assert scheduled.returncode == 2 and "a superuser's" in scheduled.stderr, scheduled.stderr


def test_a_job_another_role_names_like_a_scan_leaves_the_real_one_alone(conn, owned):
    name, owner = owned
    cron_dsn = _dsn(conn, "postgres")
    job = f"heal-autonomous-scan:{name}"
    with connect(cron_dsn) as cron:
        cron.execute(f"GRANT USAGE ON SCHEMA cron TO {owner}")
        try:
            with connect(make_conninfo(cron_dsn, user=owner)) as mine:  # pg_cron: per user
                mine.execute("SELECT cron.schedule(%s, '0 0 1 1 *', 'SELECT 1')", (job,))
            removed = pgheal("unschedule", "--orphans", "--json", "--dsn", _dsn(conn, name))
            assert removed.returncode == 0, removed.stderr
            assert json.loads(removed.stdout)["removed"] == []
            assert scalar(cron, "SELECT count(*) FROM cron.job j JOIN pg_roles r ON "
                                "r.rolname = j.username WHERE jobname = %s AND r.rolsuper",
                          (job,)) == 1  # fmt: skip
        finally:
            cron.execute("DELETE FROM cron.job WHERE username = %s", (owner,))
            cron.execute(f"REVOKE USAGE ON SCHEMA cron FROM {owner}")
