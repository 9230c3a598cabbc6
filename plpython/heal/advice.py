"""Remediation that works as written: the exact statements pgheal tells people to run.

Pure: the server's checks (:mod:`heal.health`) and the installer both use it, so a
problem is told the same way wherever it is found.
"""

from __future__ import annotations


def identifier(name: str) -> str:
    """`name` as an SQL identifier, always quoted: then no keyword needs a list."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """`text` as an SQL string literal (standard_conforming_strings, the default)."""
    return "'" + text.replace("'", "''") + "'"


def database_search_path(database: str, path: list[str]) -> str:
    """The statement that makes `path` the default search_path of `database`. Each
    schema an identifier of its own: one quoted string would be one schema's name."""
    names = ", ".join(identifier(name) for name in path)
    return f"ALTER DATABASE {identifier(database)} SET search_path = {names};"


def preload_pg_cron(preloaded: str, database: str) -> str:
    """The statements that load pg_cron (keeping what the server preloads already) and
    make `database` pg_cron's; a restart must follow."""
    libraries = [lib.strip() for lib in preloaded.split(",") if lib.strip()]
    if "pg_cron" not in libraries:
        libraries.append("pg_cron")
    return (
        f"ALTER SYSTEM SET shared_preload_libraries = {literal(', '.join(libraries))}; "
        f"ALTER SYSTEM SET cron.database_name = {literal(database)}; then restart the server "
        "and run pgheal schedule"
    )
