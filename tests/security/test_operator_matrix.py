"""Every corpus case run by a heal_operator member who is not a superuser.

Healed where the policy allows that role, refused elsewhere with PostgreSQL's own
error (never a Python traceback, never an error of pgheal's bookkeeping), and always
recorded in heal.migrations under that role.
"""

from __future__ import annotations

import psycopg

from tests.integration.test_corpus import Case, Databases, cases

#: SQLSTATE classes that mean pgheal itself broke: PL/Python (38), internal (XX),
#: privileges on pgheal's own objects (42501 is checked apart, by its message).
_BROKEN = ("38", "XX")


def _as_operator(databases: Databases, case: Case) -> str | None:
    plain = Case(case.path, case.sql, case.setup, case.settings, role=case.role or "app")
    name, user = databases.fresh(plain)
    try:
        with psycopg.connect(databases.dsn(name, user), autocommit=True) as conn:
            try:
                conn.execute("CALL heal.migrate(%s)", (case.sql,))
                outcome = "succeeded"
            except psycopg.Error as exc:
                state, text = exc.diag.sqlstate or "", str(exc)
                if state[:2] in _BROKEN or "Traceback" in text or "spiexceptions" in text:
                    return f"pgheal broke: {state} {text}"
                if " heal." in (exc.diag.message_primary or "") and state == "42501":
                    return f"pgheal's own objects refused the role: {text}"
                outcome = "failed"
        with psycopg.connect(databases.dsn(name), autocommit=True) as admin:
            recorded = admin.execute(
                "SELECT status, run_by FROM heal.migrations ORDER BY id DESC LIMIT 1"
            ).fetchone()
        if recorded != (outcome, user):
            return f"recorded {recorded}, expected ({outcome!r}, {user!r})"
        return None
    finally:
        databases.drop(name)


def test_every_corpus_case_as_a_non_superuser_operator(databases):
    problems = []
    everything = cases("heal") + cases("fail")
    for case in everything:
        problem = _as_operator(databases, case)
        if problem:
            problems.append(f"{case.path.name}: {problem}")
    assert len(everything) >= 60
    assert not problems, "\n".join(problems)
