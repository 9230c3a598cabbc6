"""What pgheal may create on a caller's behalf.

The default is "what the caller could have done by hand": a superuser gets any
extension the server has; other roles trusted extensions where they hold CREATE
on the database, and schemas likewise. Extensions that reach files, the network
or server internals are denied unless allow-listed. Settings live in
``heal.settings``; each refusal names the setting that would change it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

#: Extensions that reach files, the network, server internals, or are untrusted languages.
DEFAULT_DENY = frozenset(
    {
        "adminpack", "amcheck", "dblink", "file_fdw", "old_snapshot", "pageinspect",
        "pg_buffercache", "pg_freespacemap", "pg_prewarm", "pg_surgery", "pg_visibility",
        "pg_walinspect", "pgrowlocks", "pgstattuple", "postgres_fdw", "sepgsql",
        "plperlu", "plpython3u", "plpythonu", "plpython2u", "pltclu",
        "hstore_plperlu", "hstore_plpython3u", "jsonb_plperlu", "jsonb_plpython3u",
        "ltree_plpython3u", "bool_plperlu",
    }
)  # fmt: skip


def _list(value: str) -> frozenset[str]:
    return frozenset(v.strip() for v in value.split(",") if v.strip())


def _flag(value: str) -> bool:
    return value.strip().lower() in ("on", "true", "yes", "1")


@dataclass(frozen=True)
class Policy:
    """The settings of ``heal.settings`` that decide what may be fixed."""

    extension_schema: str = "extensions"
    allow_extensions: frozenset[str] = frozenset()
    deny_extensions: frozenset[str] = DEFAULT_DENY
    create_schemas: bool = True
    persist_search_path: bool = True
    max_attempts: int = 5

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> Policy:
        """Build from ``heal.settings`` rows; unknown names are ignored, missing ones default."""
        base = cls()
        try:
            max_attempts = int(settings.get("max_attempts", base.max_attempts))
        except ValueError:
            raise ValueError(
                f"heal.settings max_attempts must be a whole number, "
                f"not {settings['max_attempts']!r}"
            ) from None
        return cls(
            extension_schema=settings.get("extension_schema", base.extension_schema).strip()
            or base.extension_schema,
            allow_extensions=_list(settings.get("allow_extensions", "")),
            deny_extensions=_list(settings["deny_extensions"])
            if "deny_extensions" in settings
            else base.deny_extensions,
            create_schemas=_flag(settings.get("create_schemas", "on")),
            persist_search_path=_flag(settings.get("persist_search_path", "on")),
            max_attempts=max(1, max_attempts),
        )


@dataclass(frozen=True)
class Caller:
    """The role a migration runs as, and what it could do by hand."""

    role: str
    superuser: bool
    create_on_database: bool


@dataclass(frozen=True)
class Extension:
    """An available extension, as ``pg_available_extension_versions`` describes its default."""

    name: str
    version: str
    trusted: bool
    superuser: bool
    relocatable: bool
    schema: str | None = None
    requires: tuple[str, ...] = ()
    installed_schema: str | None = None
    comment: str | None = field(default=None, compare=False)


def refuse_extension(ext: Extension, policy: Policy, caller: Caller) -> str | None:
    """Why `ext` may not be installed for `caller`, or None when it may."""
    if ext.name in policy.allow_extensions:
        return None
    if ext.name in policy.deny_extensions:
        return (
            f'extension "{ext.name}" is on the deny list (heal.settings deny_extensions): '
            f"it reaches files, the network or server internals. To allow it, add it to "
            f"heal.settings allow_extensions"
        )
    if caller.superuser:
        return None
    if not ext.trusted:
        return (
            f'extension "{ext.name}" is not trusted and role "{caller.role}" is not a superuser. '
            f"To allow it, add it to heal.settings allow_extensions"
        )
    if not caller.create_on_database:
        return (
            f'role "{caller.role}" has no CREATE privilege on this database, so it could not '
            f'install "{ext.name}" by hand. Grant it (GRANT CREATE ON DATABASE ...), or add the '
            f"extension to heal.settings allow_extensions"
        )
    return None


def refuse_schema(name: str, policy: Policy, caller: Caller) -> str | None:
    """Why schema `name` may not be created for `caller`, or None when it may."""
    if not policy.create_schemas:
        return (
            f'creating schema "{name}" is turned off (heal.settings create_schemas = off). '
            f"To allow it, set create_schemas to on"
        )
    if caller.superuser or caller.create_on_database:
        return None
    return (
        f'role "{caller.role}" has no CREATE privilege on this database, so it could not create '
        f'schema "{name}" by hand. Grant it: GRANT CREATE ON DATABASE ... TO "{caller.role}"'
    )
