"""Predictive healing for DDL from any client: the body of the ddl_command_start trigger.

``heal.predict_ddl()`` (PL/pgSQL: PL/Python cannot be an event trigger) calls
:func:`heal_ddl` with the statement text, the role running it and its search_path.
It analyses the statement like ``heal.plan``, applies the fixes the policy allows
for that role (the same fix code as heal.migrate), records them with source
``event_trigger``, and returns the search_path the statement needs, for the
wrapper to set for the rest of the transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict

import plpy

from . import analyze
from .catalog import DatabaseCatalog, take_snapshot
from .db import caller, extended_path, fetch, load_parser, session_search_path, settings
from .errors import PATTERNS, Missing
from .fixes import apply_fix_as
from .planner import plan
from .policy import Policy

#: Query texts whose needs were met, per backend: DDL that repeats costs one lookup.
_MET: OrderedDict[str, None] = OrderedDict()
_MET_SIZE = 2000


def heal_ddl(query: str, role: str, search_path: str) -> str | None:
    """Fix what the DDL in `query` will miss; return the search_path it needs, if changed."""
    key = hashlib.md5(f"{role}\0{search_path}\0{query}".encode()).hexdigest()
    if key in _MET:
        _MET.move_to_end(key)
        return None
    pglast = load_parser()
    analysed = [analyze.statement(tree, pglast) for tree in analyze.parse(query, pglast)]
    path = session_search_path(search_path, role)
    found = analyze.predict(analysed, take_snapshot(analyze.names(analysed)), path)
    if not found:
        _MET[key] = None
        if len(_MET) > _MET_SIZE:
            _MET.popitem(last=False)
        return None
    policy = Policy.from_settings(settings())
    who = caller(role)
    catalog = DatabaseCatalog()
    new_path = search_path
    for index, refs in sorted(found.items()):
        number = index + 1
        for missing in refs:
            planned = plan(missing, catalog, policy, who)
            detail = {"missing": missing.describe(), "pattern": missing.pattern,
                      "fixes": ", ".join(f.describe() for f in planned.fixes),
                      "way": "predicted", "role": role}  # fmt: skip
            if not planned.ok:
                # The statement fails next, rolling this event back with it: say why now.
                detail["reason"] = planned.refused or planned.reason
                _event("auto_heal_failed", number, missing, None, detail)
                plpy.notice(f"pgheal: {missing.describe()} not healed: {detail['reason']}")
                continue
            applied = []
            try:
                with plpy.subtransaction():
                    for fix in planned.fixes:
                        if fix.kind == "search_path":
                            new_path = extended_path(new_path, fix.target)
                            applied.append(f"SET LOCAL search_path = {new_path}")
                        else:
                            applied.append(apply_fix_as(role, fix))
            except plpy.SPIError as exc:
                detail["reason"] = str(exc.args[0]) if exc.args else str(exc)
                _event("auto_heal_failed", number, missing, None, detail)
                continue
            _event("auto_heal_success", number, missing, ";\n".join(applied), detail)
            plpy.notice(f"pgheal: {missing.describe()} -> {detail['fixes']}")
    return new_path if new_path != search_path else None


def _event(
    event_type: str, statement: int, missing: Missing, fix_sql: str | None, detail: dict
) -> None:
    fetch(
        """INSERT INTO heal.build_events (event_type, statement, sqlstate, message, fix_sql,
                                          detail, source)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'event_trigger')""",
        event_type,
        statement,
        PATTERNS[missing.kind][0],
        f"{missing.describe()} is missing",
        fix_sql,
        json.dumps(detail),
        types=("text", "int4", "text", "text", "text", "text"),
    )
