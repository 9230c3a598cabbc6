"""Applying fixes. ``heal.apply_fix`` is the SECURITY DEFINER side: it checks the policy
again for the role a fix is for, so nothing reaches it that the role could not get.
"""

from __future__ import annotations

import re

import plpy

from . import reasons
from .catalog import DatabaseCatalog, extension_owns
from .db import caller, database_search_path, fetch, fetch_value, settings
from .errors import Missing
from .fingerprint import Fingerprint
from .planner import Fix, Plan, consult_network, install_extension, persist_plan, plan
from .policy import (
    Caller,
    Policy,
    refuse_extension,
    refuse_role,
    refuse_schema,
    refuse_untrusted_schema,
)


def apply_fix(role: str, kind: str, target: str, schema: str | None) -> str:
    """Apply one fix for `role`, after checking the policy again; return the SQL run.

    Whatever route asked (heal.migrate, the trigger, the scan, a learned pattern), this
    is where the rule "no more than the role could do by hand" is enforced.
    """
    # The session user, or the user the session logged in as: after a superuser's SET
    # SESSION AUTHORIZATION, the session can still go back to that one.
    if not fetch_value(
        """SELECT pg_catalog.pg_has_role(session_user, $1, 'MEMBER')
                  OR pg_catalog.pg_has_role(
                      (SELECT a.usesysid FROM pg_catalog.pg_stat_activity a
                        WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()),
                      $1, 'MEMBER')""",
        role,
        types=("name",),
    ):
        plpy.error(
            f'heal.apply_fix: session user is not a member of role "{role}"', sqlstate="42501"
        )
    policy = Policy.from_settings(settings())
    who = caller(role)
    catalog = DatabaseCatalog()
    fix = Fix(kind, target, schema)
    q = plpy.quote_ident
    if kind == "create_schema":
        if target == policy.extension_schema:
            # pgheal's own, shared by every role: made with the first extension it installs
            # (which the policy checks), never one somebody else made first; and only for
            # a role that could create a schema by hand, or that heal.settings lets pgheal
            # install an extension for (allow_extensions).
            if not (who.superuser or who.create_on_database or policy.allow_extensions):
                _refuse(
                    f'role "{role}" has no CREATE privilege on this database, so it could '
                    f'not create schema "{target}", nor install an extension, by hand'
                )
            _refuse_untrusted(catalog, target, None)
            statements = [fix.sql(q), f"GRANT USAGE ON SCHEMA {q(target)} TO PUBLIC"]
        else:
            _refuse(refuse_schema(target, policy, who))
            statements = [f"{fix.sql(q)} AUTHORIZATION {q(role)}"]
    elif kind == "create_extension":
        ext = catalog.extension(target)
        if ext is None:
            plpy.error(f'extension "{target}" is not available on this server', sqlstate="58P01")
        _refuse(refuse_extension(ext, policy, who))
        # Always a schema named: this function's own search_path starts with pg_catalog.
        home = schema or ext.schema or policy.extension_schema
        if home != "pg_catalog":
            _refuse_untrusted(catalog, home, None if home == policy.extension_schema else role)
        statements = [Fix(kind, target, home).sql(q)]
    elif kind == "create_role":
        _refuse(refuse_role(target, policy))
        statements = [fix.sql(q)]
    elif kind == "persist_search_path":
        _refuse(policy.refuse_kind(kind))
        if not policy.persist_search_path or target != policy.extension_schema:
            _refuse(
                f"only the extension schema ({policy.extension_schema}) is added to the "
                "database's search_path, and only while heal.settings persist_search_path is on"
            )
        if not (who.superuser or who.owns_database):
            _refuse(
                f'role "{role}" does not own this database, so it could not change the '
                "database's search_path by hand (ALTER DATABASE ... SET search_path)"
            )
        _refuse_untrusted(catalog, target, None)
        path = [p for p in database_search_path() if p != target] + [target]
        database = fetch_value("SELECT pg_catalog.current_database()")
        statements = [f"ALTER DATABASE {q(database)} SET search_path = {', '.join(map(q, path))}"]
    else:
        plpy.error(f"heal.apply_fix: unknown fix kind {kind!r}", sqlstate="22023")
    # The trigger leaves the commands of the extension scripts alone (heal.fixing, a
    # setting any session could set for itself too), and heal.record_ddl marks their
    # DDL as pgheal's: that it asks of this backend's memory, where no SQL can write.
    global _applying
    plpy.execute("SELECT pg_catalog.set_config('heal.fixing', 'on', true)")
    _applying = True
    try:
        for statement in statements:
            plpy.execute(statement)
    finally:
        _applying = False
        plpy.execute("SELECT pg_catalog.set_config('heal.fixing', 'off', true)")
    return ";\n".join(statements)


#: Whether :func:`apply_fix` is running its statements in this backend.
_applying = False


def applying() -> bool:
    """Body of ``heal.fixing_now()``: whether the DDL now running is a fix of pgheal's."""
    return _applying


def _refuse_untrusted(catalog: DatabaseCatalog, schema: str, role: str | None) -> None:
    info = catalog.schema_info(schema)
    if info is not None:
        _refuse(refuse_untrusted_schema(info, role))


def _refuse(reason: str | None) -> None:
    if reason:
        plpy.error(f"pgheal policy: {reason}", sqlstate="42501")


# -- heal.migrate --------------------------------------------------------------------------


def apply_fix_as(role: str, fix: Fix) -> str:
    """Apply a fix through heal.apply_fix (SECURITY DEFINER, policy checked for `role`)."""
    return str(
        fetch_value(
            "SELECT heal.apply_fix($1, $2, $3, $4)",
            role,
            fix.kind,
            fix.target,
            fix.schema,
            types=("name", "text", "text", "text"),
        )
    )


def learned_plan(
    fingerprint_id: str, catalog: DatabaseCatalog, policy: Policy, who: Caller
) -> Plan | None:
    """The fix people taught pgheal for exactly this error, if one is enabled."""
    rows = fetch(
        """SELECT id, fix_kind, fix_target FROM heal.learned_patterns
            WHERE fingerprint = $1 AND enabled ORDER BY confidence DESC, id LIMIT 1""",
        fingerprint_id,
    )
    if not rows:
        return None
    kind, target = rows[0]["fix_kind"], rows[0]["fix_target"]
    if kind == "create_extension":
        planned = install_extension(target, catalog, policy, who)
    elif kind == "create_schema":
        planned = plan(Missing("schema", target), catalog, policy, who)
    else:
        planned = persist_plan(target, catalog, policy, who)
    planned.learned = rows[0]["id"]
    return planned


def plan_error(
    fp: Fingerprint, catalog: DatabaseCatalog, policy: Policy, who: Caller
) -> tuple[Plan, str]:
    """The plan for an error met outside heal.migrate (the scan, ``pgheal run``): what
    people taught pgheal for it, else what the catalog says, else what the learning
    network knows; and which of the three."""
    learned = learned_plan(fp.id, catalog, policy, who)
    if learned is not None:
        return learned, "learned"
    assert fp.missing is not None
    planned = consult_network(plan(fp.missing, catalog, policy, who), fp.missing, catalog,
                              policy, who)  # fmt: skip
    return planned, "network" if planned.network else "catalog"


def apply_plan_as(role: str, fixes: list[Fix], planned: Plan, missing: Missing | None) -> str:
    """Apply `fixes` (of `planned`) for `role`, in the caller's subtransaction; return the
    SQL run. A fix the learning network proposed must provide what is missing: any
    member can claim that an extension provides any name, so when the object does not
    belong to the extension afterwards, the fix is undone (an error here rolls the
    subtransaction back)."""
    fix_sql = ";\n".join(apply_fix_as(role, fix) for fix in fixes)
    if planned.network is not None and missing is not None:
        extension = planned.network["extension"]
        if not extension_owns(missing, extension):
            plpy.error(
                f"the learning network's pattern installed extension {extension}, which does "
                f"not provide {missing.describe()}: undone",
                sqlstate="58P01",
            )
    return fix_sql


def fix_error_kind(exc: Exception) -> str:
    """The reason kind of a fix that raised `exc`: heal.apply_fix's own refusals
    (42501, the policy checked again) are refusals; anything else is the fix failing."""
    return reasons.REFUSED if getattr(exc, "sqlstate", None) == "42501" else reasons.FIX_FAILED


def spi_message(exc: Exception) -> str:
    """An SPI error's message without the ``plpy.Error: `` prefix of a nested PL/Python raise."""
    text = str(exc.args[0]) if exc.args else str(exc)
    return re.sub(r"^(?:plpy|spiexceptions)\.\w+: ", "", text)
