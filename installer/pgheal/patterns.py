"""Learned patterns: list, disable, and carry them from one database to another as JSON."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .problems import CommandError

FIELDS = ("fingerprint", "pattern", "sqlstate", "message", "fix_kind", "fix_target",
          "confidence", "learned_from", "enabled")  # fmt: skip


class PatternError(CommandError):
    """A patterns file that cannot be imported."""


def listing(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, message, fix_kind, fix_target, confidence, applied, enabled, "
            "learned_from, learned_at::text FROM heal.learned_patterns ORDER BY id"
        ).fetchall()


def set_enabled(conn: psycopg.Connection, pattern_id: int, enabled: bool) -> bool:
    cur = conn.execute(
        "UPDATE heal.learned_patterns SET enabled = %s WHERE id = %s", (enabled, pattern_id)
    )
    return cur.rowcount == 1


def export(conn: psycopg.Connection) -> str:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {', '.join(FIELDS)} FROM heal.learned_patterns ORDER BY id"
        ).fetchall()
    return json.dumps({"pgheal_learned_patterns": 1, "patterns": rows}, indent=2)


def import_(conn: psycopg.Connection, text: str) -> int:
    """Add the patterns of an export; a pattern already known keeps the higher confidence."""
    try:
        document = json.loads(text)
        rows = document["patterns"]
        if document.get("pgheal_learned_patterns") != 1 or not isinstance(rows, list):
            raise ValueError
        values = [tuple(row[f] for f in FIELDS) for row in rows]
    except (ValueError, KeyError, TypeError):
        raise PatternError(
            "not a pgheal patterns export (make one with `pgheal patterns export`)"
        ) from None
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            f"""INSERT INTO heal.learned_patterns AS l ({", ".join(FIELDS)})
                VALUES ({", ".join(["%s"] * len(FIELDS))})
                ON CONFLICT (fingerprint, fix_kind, fix_target) DO UPDATE
                   SET confidence = greatest(l.confidence, EXCLUDED.confidence)""",
            values,
        )
    return len(values)
