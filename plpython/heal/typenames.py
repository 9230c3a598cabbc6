"""Type names as the server prints them, as scripts write them, and as ``pg_type`` has them."""

from __future__ import annotations

_ALIASES = {
    "integer": "int4", "int": "int4", "smallint": "int2", "bigint": "int8",
    "real": "float4", "double precision": "float8", "float": "float8", "boolean": "bool",
    "character varying": "varchar", "character": "bpchar", "char": "bpchar",
    "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz",
    "time without time zone": "time", "time with time zone": "timetz", "decimal": "numeric",
    "bit varying": "varbit",
}  # fmt: skip

#: Argument types that accept many types: a candidate with one of these fits.
POLYMORPHIC = frozenset(
    {"any", "anyelement", "anyarray", "anynonarray", "anyenum", "anyrange", "anymultirange",
     "anycompatible", "anycompatiblearray", "anycompatiblenonarray", "anycompatiblerange",
     "anycompatiblemultirange", "internal"}
)  # fmt: skip


def normalize_type(name: str) -> str:
    """``integer[]`` -> ``_int4``, ``character varying(20)`` -> ``varchar``."""
    name = name.strip().lower()
    if name.endswith("[]"):
        return "_" + normalize_type(name[:-2])
    name = name.split("(")[0].strip().rpartition(".")[2].strip('"')
    return _ALIASES.get(name, name)
