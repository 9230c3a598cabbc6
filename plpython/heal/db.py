"""The thin layer over ``plpy``: queries, settings, the parser, the search path, the caller.

Everything else that talks to the server goes through these few functions.
"""

from __future__ import annotations

import os
import pwd
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

import plpy

from . import PGLAST_VERSION, __version__, parser
from .errors import is_cancel
from .searchpath import resolved, split_path

if TYPE_CHECKING:  # imported where used: the DDL trigger's first call should not pay for it
    from .policy import Caller


def cancelled(exc: BaseException) -> bool:
    """Whether `exc` is a cancel, to be raised again wherever it is caught."""
    return is_cancel(getattr(exc, "sqlstate", None))


#: The search_path of pgheal's own queries: nothing a role can create is found first.
OWN_PATH = "pg_catalog, pg_temp"


class OwnPath:
    """``with OwnPath() as path:`` runs pgheal's own queries on :data:`OWN_PATH`, in a
    session that otherwise runs a role's statements on the role's search_path.

    pgheal's queries run as whoever runs pgheal (a superuser, often): on the session's
    path, a function or operator another role put first (in public, in a schema named
    after the user, in one the database's search_path names) would run with those
    rights. `path.saved` is the session's path, restored on the way out; a fix that
    changes the session's path changes it there.
    """

    def __enter__(self) -> OwnPath:
        self.saved = leave_for_own_path()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved != OWN_PATH:
            fetch_value("SELECT pg_catalog.set_config('search_path', $1, true)", self.saved)


#: See :func:`leave_for_own_path`: the subquery is evaluated first.
_READ_AND_TAKE = f"""SELECT s.saved,
       CASE WHEN s.saved OPERATOR(pg_catalog.<>) '{OWN_PATH}'
            THEN pg_catalog.set_config('search_path', '{OWN_PATH}', true) END
  FROM (SELECT pg_catalog.current_setting('search_path') AS saved OFFSET 0) AS s"""


def leave_for_own_path() -> str:
    """The session's search_path, with :data:`OWN_PATH` taken for the rest of the
    transaction, in one query: every heal.migrate, and every DDL the trigger heals,
    begins so. No parameter and nothing unqualified: it runs on the path it leaves."""
    return fetch_value(_READ_AND_TAKE)


def take_own_path() -> None:
    """Switch to :data:`OWN_PATH` for the rest of the transaction. No parameter: a
    parameter's type would be looked up by name on the path being left."""
    plpy.execute(f"SELECT pg_catalog.set_config('search_path', '{OWN_PATH}', true)")


def _qualified_type(name: str) -> str:
    """A parameter type as pg_catalog's: plpy.prepare looks type names up on the
    session's path, where a role's domain ``public.text`` could come first."""
    return name if "." in name else f"pg_catalog.{name}"


#: Plans of :func:`fetch`'s queries, per backend: preparing and planning one costs more
#: than running it, and the DDL trigger runs some for every statement. PostgreSQL
#: re-plans a saved plan whose catalogs changed, and one run on another search_path than
#: it was last planned on, on the path it runs on: so these run on :data:`OWN_PATH`
#: (pgheal's functions' ``SET`` clause, :class:`OwnPath`). The queries are pgheal's own,
#: a bounded set of texts; the bound is a guard.
_PLANS: dict[tuple[str, tuple[str, ...]], Any] = {}
_PLANS_SIZE = 256


def fetch(query: str, *args: Any, types: tuple[str, ...] = ()) -> list[dict]:
    if not args:
        return list(plpy.execute(query))
    key = (query, types or ("text",) * len(args))
    plan_ = _PLANS.get(key)
    if plan_ is None:
        if len(_PLANS) >= _PLANS_SIZE:
            _PLANS.pop(next(iter(_PLANS)))
        plan_ = _PLANS[key] = plpy.prepare(query, [_qualified_type(t) for t in key[1]])
    return list(plpy.execute(plan_, list(args)))


def fetch_value(query: str, *args: Any, types: tuple[str, ...] = ()) -> Any:
    rows = fetch(query, *args, types=types)
    return next(iter(rows[0].values())) if rows else None


def settings() -> dict[str, str]:
    return {r["name"]: r["value"] for r in fetch("SELECT name, value FROM heal.settings")}


def load_parser() -> ModuleType:
    module = parser.loaded()
    if module is not None:
        return module
    site = fetch_value("SELECT python_path FROM heal.installation")
    return parser.load(site or None)


def server_info() -> dict[str, Any]:
    """What the installer checks: the server's Python and its pglast."""

    info: dict[str, Any] = {
        "heal_version": __version__,
        "python": sys.version.split()[0],
        "pglast_wanted": PGLAST_VERSION,
    }
    site = fetch_value("SELECT python_path FROM heal.installation")
    # Who the server runs as, and whether it can reach the directory: a directory the
    # installer sees may be closed to that OS user (a home directory, say).
    info["os_user"] = pwd.getpwuid(os.geteuid()).pw_name
    info["path_readable"] = bool(site) and os.access(site, os.R_OK | os.X_OK)
    try:
        pglast = load_parser()
        info["pglast"] = pglast.__version__.lstrip("v")
        info["pglast_path"] = os.path.dirname(pglast.__file__)
        pglast.split("SELECT 1")
    except parser.ParserUnavailable as exc:
        info["pglast"] = None
        info["error"] = str(exc)
    return info


# -- what the database knows -------------------------------------------------------------


def database_search_path() -> list[str]:
    """The database's default search_path (``ALTER DATABASE ... SET``), else the server's."""
    value = fetch_value(
        """SELECT substr(s, length('search_path=') + 1)
             FROM pg_catalog.pg_db_role_setting r, unnest(r.setconfig) s
            WHERE r.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                                    WHERE datname = current_database())
              AND r.setrole = 0 AND s LIKE 'search_path=%'"""
    )
    if value is None:
        value = fetch_value(
            "SELECT boot_val FROM pg_catalog.pg_settings WHERE name = 'search_path'"
        )
    return split_path(value or "")


def session_search_path(value: str | None = None, user: str | None = None) -> list[str]:
    """A search_path (the session's by default) as schema names, ``$user`` resolved."""
    user = user or fetch_value("SELECT current_user")
    if value is None:
        value = fetch_value("SELECT current_setting('search_path')")
    return resolved(value or "", user)


def caller(role: str | None = None) -> Caller:
    """What `role` (the current user by default) could do by hand in this database."""
    from .policy import Caller

    rows = fetch(
        """SELECT r.rolname, r.rolsuper, d.datname,
                  pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(),
                                                    'CREATE') AS can_create,
                  pg_catalog.pg_has_role(r.oid, d.datdba, 'USAGE') AS owns_database,
                  r.oid OPERATOR(pg_catalog.=) (
                      SELECT a.usesysid FROM pg_catalog.pg_stat_activity a
                       WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()
                  ) AND r.rolname OPERATOR(pg_catalog.=) session_user AS logged_in
             FROM pg_catalog.pg_roles r, pg_catalog.pg_database d
            WHERE r.rolname = coalesce($1, current_user)
              AND d.datname = pg_catalog.current_database()""",
        role,
        types=("name",),
    )
    if not rows:
        plpy.error(f'role "{role}" does not exist', sqlstate="42704")
    row = rows[0]
    return Caller(row["rolname"], row["rolsuper"], row["can_create"], row["owns_database"],
                  bool(row["logged_in"]), row["datname"])  # fmt: skip


# -- the extension catalog ---------------------------------------------------------------
