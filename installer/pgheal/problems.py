"""The CLI's one error path: what went wrong, in one line, and what to do about it.

Every command ends in an exit code the README documents: 2 for bad usage, a missing
prerequisite, a refusal or no connection; 130 when interrupted; 141 (as a shell
reports SIGPIPE) when its output was closed early, which it says nothing about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

#: Exit codes, as the README lists them.
USAGE = 2
INTERRUPTED = 130
BROKEN_PIPE = 141

_HEAL_OBJECT = re.compile(r'(?:relation|schema|function|procedure|view) "?heal\b|\bheal\.')


class CommandError(Exception):
    """What a command refuses or cannot do, said in one line that names the fix: the
    base of each module's own error, so that the CLI catches them all without
    importing the modules a command does not use."""


@dataclass(frozen=True)
class Problem:
    message: str
    exit_code: int = USAGE

    def line(self) -> str:
        """The message on one line, whatever libpq or the server put in it."""
        return " ".join(self.message.split())


def database_error(exc: psycopg.Error, user: str | None, dbname: str | None) -> Problem:
    """A server's error as one line naming the fix: not installed, not allowed, or the
    server's own words (with its hint)."""
    diag = exc.diag
    primary = diag.message_primary or str(exc).strip().split("\n")[0]
    where = f"database {dbname}" if dbname else "this database"
    role = user or "your role"
    if isinstance(exc, psycopg.OperationalError) and diag.sqlstate is None:
        return Problem(f"cannot connect: {str(exc).strip()}".replace("\n", " "))
    if diag.sqlstate in ("42P01", "3F000", "42883") and _HEAL_OBJECT.search(primary):
        return Problem(f"pgheal is not installed in {where} ({primary}): run `pgheal install`")
    if diag.sqlstate == "42501":
        if "cron" in primary or "superuser" in primary:
            return Problem(f"{primary}: scheduling with pg_cron is a superuser's; connect as "
                           "one with -U")  # fmt: skip
        if "heal.settings" in primary or "table settings" in primary:
            return Problem(f"{primary}: pgheal's settings are changed by a superuser (or the "
                           "role that installed pgheal); connect as one with -U")  # fmt: skip
        # pgheal's commands read and call only pgheal's own objects.
        return Problem(f"{primary}: role {role} may not use pgheal; as a superuser, run "
                       f"GRANT heal_operator TO {role}")  # fmt: skip
    text = primary + (f" ({diag.message_hint})" if diag.message_hint else "")
    return Problem(f"{text} [SQLSTATE {diag.sqlstate}]" if diag.sqlstate else text)


def os_error(exc: OSError) -> Problem:
    where = f"{exc.filename}: " if exc.filename else ""
    return Problem(f"{where}{exc.strerror or exc}")


def interrupted(command: str) -> Problem:
    if command in ("migrate", "baseline"):
        return Problem("interrupted: migrations already reported as applied stay applied; the "
                       "one running was rolled back (pgheal info shows where things stand)",
                       INTERRUPTED)  # fmt: skip
    return Problem("interrupted", INTERRUPTED)
