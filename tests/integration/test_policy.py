"""What may be created for whom: heal.settings, roles, and the SECURITY DEFINER boundary."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from .conftest import connect, events, extensions, migrate, role_dsn, scalar


@pytest.fixture
def app_role(conn, app_role):
    """The test setup's role, allowed to run heal.migrate (member of heal_operator)."""
    conn.execute(f"GRANT heal_operator TO {app_role}")
    return app_role


def as_role(dsn: str, role: str) -> psycopg.Connection:
    return connect(role_dsn(dsn, role))


def test_denied_extension_names_the_setting(conn):
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "SELECT dblink_connect('host=nowhere');")
    detail = info.value.diag.message_detail
    assert 'extension "dblink" is on the deny list' in detail
    assert "allow_extensions" in detail
    assert "dblink" not in extensions(conn)


def test_the_refusal_names_a_statement_that_works_as_written(conn):
    conn.execute("UPDATE heal.settings SET value = 'citext' WHERE name = 'allow_extensions'")
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "SELECT dblink_connect('host=nowhere');")
    statement = info.value.diag.message_detail.split("as a superuser: ")[1].split("\n")[0]
    assert statement.startswith("UPDATE heal.settings"), statement
    conn.execute(statement)
    assert scalar(conn, "SELECT value FROM heal.settings WHERE name = 'allow_extensions'") == (
        "citext,dblink"
    )
    migrate(conn, "CREATE VIEW v AS SELECT dblink_get_connections() AS c;")
    assert "dblink" in extensions(conn)


def test_allow_list_overrides_the_deny_list(conn):
    conn.execute("UPDATE heal.settings SET value = 'dblink' WHERE name = 'allow_extensions'")
    migrate(conn, "CREATE VIEW v AS SELECT dblink_get_connections() AS c;")
    assert "dblink" in extensions(conn)


def test_non_superuser_gets_trusted_extensions_with_create_on_database(conn, dsn, app_role):
    conn.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {app_role}")
    with as_role(dsn, app_role) as app:
        migrate(app, "CREATE TABLE t (id uuid DEFAULT uuid_generate_v4(), e citext);")
        owner = scalar(app, "SELECT tableowner FROM pg_tables WHERE tablename = 't'")
    assert owner == app_role
    assert {"uuid-ossp", "citext"} <= set(extensions(conn))


def test_non_superuser_never_gets_an_untrusted_extension(conn, dsn, app_role):
    conn.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {app_role}")
    with as_role(dsn, app_role) as app, pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(app, "SELECT pg_stat_statements_reset();")
    assert 'extension "pg_stat_statements" is not trusted' in info.value.diag.message_detail
    assert "pg_stat_statements" not in extensions(conn)


def test_non_superuser_without_create_on_database_gets_no_extension(conn, dsn, app_role):
    conn.execute(f"REVOKE CREATE ON DATABASE {conn.info.dbname} FROM PUBLIC")
    with as_role(dsn, app_role) as app, pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(app, "CREATE TABLE t (id uuid DEFAULT uuid_generate_v4());")
    assert "has no CREATE privilege on this database" in info.value.diag.message_detail
    assert "uuid-ossp" not in extensions(conn)


def test_non_superuser_without_create_on_database_gets_no_schema(conn, dsn, app_role):
    conn.execute(f"REVOKE CREATE ON DATABASE {conn.info.dbname} FROM PUBLIC")
    with as_role(dsn, app_role) as app, pytest.raises(psycopg.errors.InvalidSchemaName) as info:
        migrate(app, "CREATE TABLE app.t (a int);")
    assert "could not create" in info.value.diag.message_detail
    assert scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'app'") == 0


def test_schema_created_for_a_role_belongs_to_it(conn, dsn, app_role):
    conn.execute(f"GRANT CREATE ON DATABASE {conn.info.dbname} TO {app_role}")
    with as_role(dsn, app_role) as app:
        migrate(app, "CREATE TABLE billing.invoices (id int);")
    owner = scalar(
        conn, "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'billing'"
    )
    assert owner == app_role


def test_schema_creation_can_be_turned_off(conn):
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'create_schemas'")
    with pytest.raises(psycopg.errors.InvalidSchemaName) as info:
        migrate(conn, "CREATE TABLE app.t (a int);")
    assert "create_schemas" in info.value.diag.message_detail


def test_migrate_is_not_granted_to_public(conn, dsn):
    name = f"stranger_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {name} LOGIN")
    with as_role(dsn, name) as stranger, pytest.raises(psycopg.errors.InsufficientPrivilege):
        migrate(stranger, "SELECT 1")


def test_the_migration_runs_with_the_callers_rights(conn, dsn, app_role):
    conn.execute("CREATE TABLE secret (a int)")
    with as_role(dsn, app_role) as app, pytest.raises(psycopg.errors.InsufficientPrivilege):
        migrate(app, "DROP TABLE secret;")
    assert scalar(conn, "SELECT to_regclass('secret')::text") == "secret"


def test_apply_fix_refuses_a_role_the_session_cannot_act_as(conn, dsn, app_role):
    with as_role(dsn, app_role) as app, pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("SELECT heal.apply_fix('postgres', 'create_extension', 'dblink', 'public')")
    assert "dblink" not in extensions(conn)


def test_attempts_are_bounded(conn):
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'predict'")
    conn.execute("UPDATE heal.settings SET value = '1' WHERE name = 'max_attempts'")
    with pytest.raises(psycopg.errors.UndefinedObject) as info:
        migrate(conn, "CREATE TABLE app.t (id uuid DEFAULT uuid_generate_v4(), e citext);")
    assert "gave up after 1 fixes (heal.settings max_attempts)" in info.value.diag.message_detail
    assert [e[0] for e in events(conn)].count("auto_heal_success") == 1
    assert scalar(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = 'app'") == 0


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("max_attempts", "many", "max_attempts must be a whole number from 1 to 100"),
        ("create_schemas", "perhaps", "create_schemas must be on or off"),
        ("disabled_fixes", "create_table", "unknown fix kinds ['create_table']"),
        ("extension_schema", " ", "extension_schema must name a schema"),
    ],
)
def test_bad_setting_values_are_refused_when_set(conn, name, value, problem):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as info:
        conn.execute("UPDATE heal.settings SET value = %s WHERE name = %s", (value, name))
    assert problem in str(info.value)


def test_unknown_setting_is_refused(conn):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown setting 'max_tries'"):
        conn.execute(
            "INSERT INTO heal.settings (name, value, description) VALUES ('max_tries', '1', '')"
        )


def test_an_error_that_survives_its_fix_stops_the_run(conn, dsn, app_role):
    conn.execute("CREATE SCHEMA locked")
    conn.execute("CREATE TYPE locked.mood AS ENUM ('ok')")  # no USAGE for the app role
    with as_role(dsn, app_role) as app, pytest.raises(psycopg.errors.UndefinedObject) as info:
        migrate(app, "CREATE TABLE t (m mood);")
    detail = info.value.diag.message_detail
    assert info.value.diag.message_primary == 'type "mood" does not exist'
    assert "the error survived its own fix; tried: SET LOCAL search_path" in detail


def _advice(exc: psycopg.Error, after: str) -> str:
    """The statement a refusal names after `after`, up to its closing parenthesis or end."""
    detail = exc.diag.message_detail or ""
    statement = detail.split(after, 1)[1].split("\n")[0]
    return statement.split("), or")[0].strip()


def test_a_disabled_fix_kind_names_the_update_that_enables_it(conn):
    conn.execute("UPDATE heal.settings SET value = 'create_role, create_extension' "
                 "WHERE name = 'disabled_fixes'")  # fmt: skip
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "SELECT uuid_generate_v4()")
    conn.execute(_advice(info.value, "as a superuser: "))
    assert scalar(conn, "SELECT value FROM heal.settings WHERE name = 'disabled_fixes'") == (
        "create_role"
    )
    migrate(conn, "SELECT uuid_generate_v4()")


def test_schema_refusals_name_statements_that_work_as_written(conn, dsn, app_role):
    conn.execute("UPDATE heal.settings SET value = 'off' WHERE name = 'create_schemas'")
    with pytest.raises(psycopg.errors.InvalidSchemaName) as info:
        migrate(conn, "CREATE TABLE app.t (a int);")
    conn.execute(_advice(info.value, "as a superuser: "))
    migrate(conn, "CREATE TABLE app.t (a int);")
    conn.execute(f"REVOKE CREATE ON DATABASE {conn.info.dbname} FROM PUBLIC")
    with as_role(dsn, app_role) as app, pytest.raises(psycopg.errors.InvalidSchemaName) as info:
        migrate(app, "CREATE TABLE billing.t (a int);")
    grant = _advice(info.value, "Grant it (")
    assert grant == f'GRANT CREATE ON DATABASE "{conn.info.dbname}" TO "{app_role}"'
    conn.execute(grant)
    with as_role(dsn, app_role) as app:
        migrate(app, "CREATE TABLE billing.t (a int);")


def test_a_role_refusal_names_the_update_that_allows_it(conn):
    conn.execute("CREATE TABLE t (a int)")
    with pytest.raises(psycopg.errors.UndefinedObject) as info:
        migrate(conn, "GRANT SELECT ON t TO reporting")
    conn.execute(_advice(info.value, "as a superuser: "))
    migrate(conn, "GRANT SELECT ON t TO reporting")
    assert scalar(conn, "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'reporting'") is False


def test_an_untrusted_schema_names_the_statements_that_make_it_safe(conn, dsn, app_role):
    other = f"other_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {other}")
    conn.execute("CREATE SCHEMA tools")
    conn.execute("CREATE FUNCTION tools.answer() RETURNS int LANGUAGE sql AS 'SELECT 42'")
    conn.execute(f"GRANT CREATE ON SCHEMA tools TO PUBLIC, {other}")
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "SELECT answer()")
    fix = info.value.diag.message_detail.split("make the schema safe (")[1].rsplit(")", 1)[0]
    assert fix == f'REVOKE CREATE ON SCHEMA "tools" FROM PUBLIC, "{other}"'
    conn.execute(fix)
    migrate(conn, "SELECT answer()")
    conn.execute(f"ALTER SCHEMA tools OWNER TO {other}")
    with pytest.raises(psycopg.errors.UndefinedFunction) as info:
        migrate(conn, "SELECT answer()")
    fix = info.value.diag.message_detail.split("make the schema safe (as a superuser: ")[1]
    conn.execute(fix.rsplit(")", 1)[0])
    migrate(conn, "SELECT answer()")
