"""Remediation statements are exact: quoted as the server reads them back."""

from heal import advice


def test_database_search_path_is_one_statement_quoted_as_needed():
    assert advice.database_search_path("app", ["$user", "public", "extensions"]) == (
        'ALTER DATABASE "app" SET search_path = "$user", "public", "extensions";'
    )
    assert advice.database_search_path('My"DB', ["select", "it's"]) == (
        'ALTER DATABASE "My""DB" SET search_path = "select", "it\'s";'
    )


def test_preloading_pg_cron_keeps_what_is_preloaded():
    assert advice.preload_pg_cron("pg_stat_statements", "postgres") == (
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements, pg_cron'; "
        "ALTER SYSTEM SET cron.database_name = 'postgres'; then restart the server and run "
        "pgheal schedule"
    )
    assert advice.preload_pg_cron("", "app").startswith(
        "ALTER SYSTEM SET shared_preload_libraries = 'pg_cron';"
    )
