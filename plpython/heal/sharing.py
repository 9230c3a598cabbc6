"""What this database tells the learning network: ``heal.shared_patterns``, kept by the scan.

Only error kinds and catalog names leave the database. A learned fix is shared when
it installs an extension and the object the error missed is that extension's, named
without a schema and with argument types that are the system's or an extension's;
anything an application named (its schemas, tables, types, roles, values, the
statement, the message) stays here. The knowledge of installed extensions is the
extension catalog's: kinds and names their scripts create.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .catalog import extension_owns
from .db import fetch, fetch_value
from .errors import Missing
from .fingerprint import fingerprint, shareable

#: Where dpkg lists the files of each installed package.
DPKG_INFO = Path("/var/lib/dpkg/info")

#: Kinds of object whose knowledge is shared (a cast has no name of its own).
PROVIDED_KINDS = ("function", "procedure", "type", "operator", "opclass", "default_opclass",
                  "access_method", "tablesample", "tstemplate", "tsparser", "tsdictionary",
                  "tsconfig", "fdw", "transform", "relation")  # fmt: skip


def share() -> int:
    """Body of ``heal.share_patterns()``: bring this member's rows of
    heal.shared_patterns up to date; return how many it holds. Writes only rows that
    changed, so replication carries only news."""
    me = fetch(f"""SELECT m.member_id::text, ({_SIGNATURE}) AS signature,
                          m.shared_signature, m.shared_rows,
                          (SELECT count(*) FROM heal.shared_patterns s
                            WHERE s.member_id = m.member_id) AS rows
                     FROM heal.network_member m""")[0]  # fmt: skip
    member, signature = me["member_id"], me["signature"]
    if signature == me["shared_signature"] and me["rows"] == me["shared_rows"]:
        return int(me["rows"])  # nothing changed, and nobody deleted rows by hand
    rows = [*_fixes(), *_provides()]
    fetch(
        """WITH wanted AS (
               SELECT * FROM pg_catalog.jsonb_to_recordset($2::jsonb) AS w(
                   kind text, object_kind text, object text, extension text, sqlstate text,
                   pattern text, os_package text, applied bigint, held bigint)),
           gone AS (
               DELETE FROM heal.shared_patterns s
                WHERE s.member_id = $1::uuid
                  AND NOT EXISTS (SELECT FROM wanted w
                                   WHERE (w.kind, w.object_kind, w.object, w.extension)
                                       = (s.kind, s.object_kind, s.object, s.extension)))
           INSERT INTO heal.shared_patterns AS s (member_id, kind, object_kind, object,
                  extension, sqlstate, pattern, os_package, applied, held)
           SELECT $1::uuid, kind, object_kind, object, extension, sqlstate, pattern,
                  os_package, applied, held FROM wanted
           ON CONFLICT (member_id, kind, object_kind, object, extension) DO UPDATE
              SET sqlstate = EXCLUDED.sqlstate, pattern = EXCLUDED.pattern,
                  os_package = EXCLUDED.os_package, applied = EXCLUDED.applied,
                  held = EXCLUDED.held, updated_at = pg_catalog.now()
            WHERE (s.sqlstate, s.pattern, s.os_package, s.applied, s.held) IS DISTINCT FROM
                  (EXCLUDED.sqlstate, EXCLUDED.pattern, EXCLUDED.os_package, EXCLUDED.applied,
                   EXCLUDED.held)""",
        member,
        json.dumps(rows),
    )
    fetch("UPDATE heal.network_member SET shared_signature = $1, shared_rows = $2", signature,
          len(rows), types=("text", "int8"))  # fmt: skip
    return len(rows)


#: What the shared rows are made from: the lessons, the installed extensions, the
#: extension catalog and the member id. While it stays, the rows would stay.
_SIGNATURE = """SELECT pg_catalog.md5(concat_ws('|',
       (SELECT string_agg(concat_ws(':', id, fix_kind, fix_target, applied, ineffective), ','
                          ORDER BY id) FROM heal.learned_patterns),
       (SELECT string_agg(extname || ':' || extversion, ',' ORDER BY extname)
          FROM pg_catalog.pg_extension),
       (SELECT max(id) FROM heal.extension_catalog_builds),
       (SELECT member_id FROM heal.network_member)))"""


def _fixes() -> list[dict]:
    """Learned fixes that install an extension, as kinds and catalog names."""
    lessons = fetch(
        """SELECT sqlstate, message, fix_target, applied, ineffective
             FROM heal.learned_patterns WHERE fix_kind = 'create_extension'"""
    )
    if not lessons:
        return []
    types = _catalog_types()
    shared: dict[tuple, dict] = {}
    for lesson in lessons:
        missing = fingerprint(lesson["sqlstate"], lesson["message"]).missing
        seen = shareable(missing, types) if missing is not None else None
        if seen is None or not _provides_object(seen, lesson["fix_target"]):
            continue
        applied = 1 + lesson["applied"]  # the person's own fix was the first
        row = {"kind": "fix", "object_kind": seen.kind, "object": seen.describe(),
               "extension": lesson["fix_target"], "sqlstate": lesson["sqlstate"],
               "pattern": seen.pattern, "os_package": os_package(lesson["fix_target"]),
               "applied": applied, "held": max(0, applied - lesson["ineffective"])}  # fmt: skip
        key = (row["object_kind"], row["object"], row["extension"])
        if key in shared:  # two messages of one object: one pattern, counts summed
            shared[key]["applied"] += row["applied"]
            shared[key]["held"] += row["held"]
        else:
            shared[key] = row
    return list(shared.values())


def _provides_object(missing: Missing, extension: str) -> bool:
    """Whether `extension` creates an object of that kind and name (its script, or what
    it owns now): then the name is the extension's, not an application's."""
    return bool(
        fetch_value(
            """SELECT count(*) FROM heal.extension_objects
                WHERE extension = $1 AND kind = $2 AND name = $3""",
            extension,
            missing.kind,
            missing.name,
        )
    ) or extension_owns(missing, extension)


def _catalog_types() -> frozenset[str]:
    """Type names of the system (pg_catalog) and of installed extensions."""
    rows = fetch(
        """SELECT t.typname FROM pg_catalog.pg_type t
            WHERE t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace
               OR EXISTS (SELECT FROM pg_catalog.pg_depend d
                           WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                             AND d.objid = t.oid AND d.deptype = 'e')"""
    )
    return frozenset(r["typname"].lstrip("_") for r in rows)


def _provides() -> list[dict]:
    """What the extensions installed here provide: kinds and names from their scripts."""
    rows = fetch(
        """SELECT DISTINCT o.extension, o.kind, o.name
             FROM heal.extension_objects o
             JOIN pg_catalog.pg_extension e ON e.extname = o.extension
            WHERE o.kind = ANY($1) AND e.extname <> 'plpgsql'
            ORDER BY 1, 2, 3""",
        list(PROVIDED_KINDS),
        types=("text[]",),
    )
    packages: dict[str, str | None] = {}
    out = []
    for r in rows:
        if r["extension"] not in packages:
            packages[r["extension"]] = os_package(r["extension"])
        out.append({"kind": "provides", "object_kind": r["kind"], "object": r["name"],
                    "extension": r["extension"], "sqlstate": None, "pattern": None,
                    "os_package": packages[r["extension"]], "applied": 0, "held": 0})  # fmt: skip
    return out


_packages: dict[str, str | None] = {}


def os_package(extension: str) -> str | None:
    """The OS package that installed `extension` on this host, with the server's major
    version as ``{major}`` so another version's host can render its own; pgheal's table
    of well-known extensions first, else the package manager's file lists."""
    if extension in _packages:
        return _packages[extension]
    package = fetch_value(
        "SELECT package FROM heal.known_extensions WHERE extension = $1 LIMIT 1", extension
    )
    if package is None:
        package = _dpkg_owner(extension)
    _packages[extension] = package
    return package


def _dpkg_owner(extension: str) -> str | None:
    sharedir = fetch_value("SELECT setting FROM pg_catalog.pg_config WHERE name = 'SHAREDIR'")
    major = str(int(fetch_value("SELECT current_setting('server_version_num')")) // 10000)
    wanted = f"{sharedir}/extension/{extension}.control\n"
    try:
        lists = sorted(DPKG_INFO.glob("*.list"))
    except OSError:
        return None
    for listing in lists:
        try:
            if wanted in listing.read_text(errors="replace"):
                name = listing.name[: -len(".list")].split(":")[0]
                return re.sub(rf"(?<=-){major}(?=-|$)", "{major}", name)
        except OSError:
            continue
    return None
