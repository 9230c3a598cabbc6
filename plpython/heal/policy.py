"""What pgheal may do on a caller's behalf.

The default is "what the caller could have done by hand": a superuser gets any
extension the server has; other roles trusted extensions where they hold CREATE
on the database, and schemas likewise. Extensions that reach files, the network
or server internals are denied unless allow-listed; roles are created only when
the policy names them. Settings live in ``heal.settings``; each refusal names
the setting that would change it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .advice import identifier, literal

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

#: The kinds of fix, each of which ``disabled_fixes`` can turn off.
FIX_KINDS = (
    "create_schema", "create_extension", "search_path", "persist_search_path",
    "create_role", "skip_identical_policy", "retry_transient",
)  # fmt: skip


class SettingError(ValueError):
    """A value in heal.settings that cannot be used."""


def _list(value: str) -> frozenset[str]:
    return frozenset(v.strip() for v in value.split(",") if v.strip())


def _flag(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise SettingError(f"heal.settings {name} must be on or off, not {value!r}")


#: The values of ``network_patterns``.
NETWORK_MODES = ("off", "suggest", "apply")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    lowered = value.strip().lower()
    if lowered not in choices:
        raise SettingError(
            f"heal.settings {name} must be one of {', '.join(choices)}, not {value!r}"
        )
    return lowered


def _whole(name: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise SettingError(
            f"heal.settings {name} must be a whole number from {low} to {high}, not {value!r}"
        )
    return number


@dataclass(frozen=True)
class Policy:
    """The settings of ``heal.settings`` that decide what may be fixed, and how hard."""

    extension_schema: str = "extensions"
    allow_extensions: frozenset[str] = frozenset()
    deny_extensions: frozenset[str] = DEFAULT_DENY
    create_schemas: bool = True
    schema_roles: frozenset[str] = frozenset()
    grant_roles: frozenset[str] = frozenset()
    persist_search_path: bool = True
    disabled_fixes: frozenset[str] = frozenset()
    max_attempts: int = 5
    predict: bool = True
    predictive: bool = True
    lock_timeout_ms: int = 60000
    retry_delay_ms: int = 100
    min_occurrences: int = 1
    scan_max_bytes: int = 64 * 1024 * 1024
    scan_max_events: int = 100_000
    retention_error_events_days: int = 30
    retention_build_events_days: int = 90
    retention_cron_days: int = 14
    #: What the learning network's patterns may do here: ``off``, ``suggest`` (named in
    #: heal.plan and failure messages) or ``apply`` (within this policy, never beyond).
    network_patterns: str = "suggest"

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> Policy:
        """Build from ``heal.settings`` rows; missing ones default, bad values raise."""
        base = cls()
        get = settings.get
        disabled = _list(get("disabled_fixes", ""))
        unknown = disabled - set(FIX_KINDS)
        if unknown:
            raise SettingError(
                f"heal.settings disabled_fixes names unknown fix kinds {sorted(unknown)}; "
                f"known: {', '.join(FIX_KINDS)}"
            )
        return cls(
            extension_schema=get("extension_schema", "").strip() or base.extension_schema,
            allow_extensions=_list(get("allow_extensions", "")),
            deny_extensions=_list(settings["deny_extensions"])
            if "deny_extensions" in settings
            else base.deny_extensions,
            create_schemas=_flag("create_schemas", get("create_schemas", "on")),
            schema_roles=_list(get("schema_roles", "")),
            grant_roles=_list(get("grant_roles", "")),
            persist_search_path=_flag("persist_search_path", get("persist_search_path", "on")),
            disabled_fixes=disabled,
            max_attempts=_whole("max_attempts", get("max_attempts", "5"), 1, 100),
            predict=_flag("predict", get("predict", "on")),
            predictive=_flag("predictive", get("predictive", "on")),
            lock_timeout_ms=_whole("lock_timeout_ms", get("lock_timeout_ms", "60000"), 0, 86400000),
            retry_delay_ms=_whole("retry_delay_ms", get("retry_delay_ms", "100"), 0, 60000),
            min_occurrences=_whole("min_occurrences", get("min_occurrences", "1"), 1, 1000000),
            scan_max_bytes=_whole(
                "scan_max_bytes", get("scan_max_bytes", str(base.scan_max_bytes)), 1024, 2**31
            ),
            scan_max_events=_whole(
                "scan_max_events", get("scan_max_events", str(base.scan_max_events)), 1, 10**7
            ),
            retention_error_events_days=_whole(
                "retention_error_events_days", get("retention_error_events_days", "30"), 1, 36500
            ),
            retention_build_events_days=_whole(
                "retention_build_events_days", get("retention_build_events_days", "90"), 1, 36500
            ),
            retention_cron_days=_whole(
                "retention_cron_days", get("retention_cron_days", "14"), 1, 36500
            ),
            network_patterns=_choice(
                "network_patterns",
                get("network_patterns", base.network_patterns),
                NETWORK_MODES,
            ),
        )

    def refuse_kind(self, kind: str) -> str | None:
        if kind in self.disabled_fixes:
            return (
                f"fixes of kind {kind} are turned off (heal.settings disabled_fixes). "
                f"To allow them, as a superuser: {_remove_from('disabled_fixes', kind)}"
            )
        return None


#: The names ``heal.settings`` may hold.
SETTING_NAMES = frozenset(
    {"extension_schema", "allow_extensions", "deny_extensions", "create_schemas", "schema_roles",
     "grant_roles", "persist_search_path", "disabled_fixes", "max_attempts", "predict",
     "lock_timeout_ms", "retry_delay_ms", "min_occurrences", "scan_max_bytes", "scan_max_events",
     "retention_error_events_days", "retention_build_events_days", "retention_cron_days",
     "scan_schedule", "predictive", "network_patterns"}
)  # fmt: skip


def setting_problem(name: str, value: str | None) -> str | None:
    """Why `value` cannot be stored for setting `name`, or None when it can."""
    if name not in SETTING_NAMES:
        return f"unknown setting {name!r}; known: {', '.join(sorted(SETTING_NAMES))}"
    if value is None:
        return f"heal.settings {name} must not be NULL"
    if name == "extension_schema" and not value.strip():
        return "heal.settings extension_schema must name a schema"
    if name == "scan_schedule" and len(value.split()) != 5:
        return (
            f"heal.settings scan_schedule must be a cron schedule of five fields "
            f"(minute hour day month weekday, GMT), not {value!r}"
        )
    try:
        Policy.from_settings({name: value})
    except SettingError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Caller:
    """The role a migration runs as, and what it could do by hand."""

    role: str
    superuser: bool
    create_on_database: bool
    #: Has the rights of the database's owner: may ALTER DATABASE ... SET.
    owns_database: bool = False
    #: The session logged in as this very role. When not (SET ROLE, SET SESSION
    #: AUTHORIZATION), the session can go back to the role it logged in as, keeping its
    #: search_path: a schema goes on it only when it is safe for every role.
    logged_in: bool = True
    #: The database it runs in, for advice that names it.
    database: str = ""

    @property
    def path_trust(self) -> str | None:
        """The role a schema must be trusted for to go on this session's search_path
        (None: every role)."""
        return self.role if self.logged_in else None


@dataclass(frozen=True)
class Extension:
    """An available extension, as its control file describes its default version."""

    name: str
    version: str
    trusted: bool
    superuser: bool
    relocatable: bool
    schema: str | None = None
    requires: tuple[str, ...] = ()
    installed_schema: str | None = None
    comment: str | None = field(default=None, compare=False)


def _allow_statement(extension: str) -> str:
    """The statement that adds `extension` to the allow-list, as a refusal names it."""
    return _add_to("allow_extensions", extension)


def _add_to(setting: str, item: str) -> str:
    """The statement that adds `item` to list setting `setting`."""
    return ("UPDATE heal.settings SET value = concat_ws(',', nullif(value, ''), "
            f"{literal(item)}) WHERE name = {literal(setting)}")  # fmt: skip


def _remove_from(setting: str, item: str) -> str:
    """The statement that takes `item` out of list setting `setting`."""
    return ("UPDATE heal.settings SET value = array_to_string(array_remove("
            f"regexp_split_to_array(value, '\\s*,\\s*'), {literal(item)}), ',') "
            f"WHERE name = {literal(setting)}")  # fmt: skip


def refuse_extension(ext: Extension, policy: Policy, caller: Caller) -> str | None:
    """Why `ext` may not be installed for `caller`, or None when it may."""
    if refused := policy.refuse_kind("create_extension"):
        return refused
    if ext.name in policy.allow_extensions:
        return None
    if ext.name in policy.deny_extensions:
        return (
            f'extension "{ext.name}" is on the deny list (heal.settings deny_extensions): '
            f"it reaches files, the network or server internals. To allow it, as a superuser: "
            f"{_allow_statement(ext.name)}"
        )
    if caller.superuser:
        return None
    if not ext.trusted:
        return (
            f'extension "{ext.name}" is not trusted and role "{caller.role}" is not a superuser. '
            f"To allow it, as a superuser: {_allow_statement(ext.name)}"
        )
    if not caller.create_on_database:
        return (
            f'role "{caller.role}" has no CREATE privilege on this database, so it could not '
            f'install "{ext.name}" by hand. Grant it ({_grant_create(caller)}), or, as a '
            f"superuser: {_allow_statement(ext.name)}"
        )
    return None


def refuse_schema(name: str, policy: Policy, caller: Caller) -> str | None:
    """Why schema `name` may not be created for `caller`, or None when it may."""
    if refused := policy.refuse_kind("create_schema"):
        return refused
    if not policy.create_schemas:
        return (
            f'creating schema "{name}" is turned off (heal.settings create_schemas = off). '
            "To allow it, as a superuser: UPDATE heal.settings SET value = 'on' "
            "WHERE name = 'create_schemas'"
        )
    if caller.superuser or caller.create_on_database or caller.role in policy.schema_roles:
        return None
    return (
        f'role "{caller.role}" has no CREATE privilege on this database, so it could not create '
        f'schema "{name}" by hand. Grant it ({_grant_create(caller)}), or, as a superuser: '
        f"{_add_to('schema_roles', caller.role)}"
    )


def refuse_role(name: str, policy: Policy) -> str | None:
    """Why role `name` may not be created (NOLOGIN) to heal a GRANT, or None when it may."""
    if refused := policy.refuse_kind("create_role"):
        return refused
    if name in policy.grant_roles:
        return None
    return (
        f'role "{name}" is not in heal.settings grant_roles, so pgheal does not create it. '
        f"To allow it (it is created NOLOGIN), as a superuser: {_add_to('grant_roles', name)}"
    )


@dataclass(frozen=True)
class SchemaInfo:
    """Who can put objects into a schema: what :func:`refuse_untrusted_schema` judges."""

    name: str
    owner: str
    owner_superuser: bool
    #: The schema was created by an extension's script.
    of_extension: bool = False
    #: Roles other than the owner, not superusers, that hold CREATE on it ("PUBLIC": all).
    creators: tuple[str, ...] = ()
    #: Roles, not superusers, that have the owner's rights through membership.
    members: tuple[str, ...] = ()

    @property
    def temporary(self) -> bool:
        """A session's temporary schema (``pg_temp_N``, ``pg_toast_temp_N``): owned by the
        bootstrap superuser on paper, filled by whichever role holds that session."""
        return is_temporary_schema(self.name)


def is_temporary_schema(name: str) -> bool:
    """Whether `name` is a session's temporary schema, this session's or another's."""
    return re.fullmatch(r"pg_(?:toast_)?temp_\d+", name) is not None


#: The rule every refusal of an untrusted schema ends with.
SCHEMA_TRUST_RULE = (
    "pgheal puts a schema on a search path, or installs an extension into it, only when "
    "an extension or a superuser (or the role itself) owns it and no other role can create "
    "objects in it (CVE-2018-1058)"
)


def _grant_create(caller: Caller) -> str:
    database = identifier(caller.database) if caller.database else "CURRENT_DATABASE"
    return f"GRANT CREATE ON DATABASE {database} TO {identifier(caller.role)}"


def _revoke_creators(info: SchemaInfo, creators: list[str]) -> list[str]:
    if not creators:
        return []
    names = ", ".join(r if r == "PUBLIC" else identifier(r) for r in creators)
    return [f"REVOKE CREATE ON SCHEMA {identifier(info.name)} FROM {names}"]


def refuse_untrusted_schema(info: SchemaInfo, role: str | None) -> str | None:
    """Why schema `info` must not serve `role`, or None when it may.

    A name resolved through a schema runs whatever its owner, or anyone who can
    CREATE in it, put there first: a function, an operator, an overload that fits
    better. For `role` None the schema must be safe for every role (the database's
    search_path, the shared extension schema).
    """
    others = sorted(
        {r for r in (*info.creators, *info.members) if r != role},
        key=lambda r: (r != "PUBLIC", r),
    )
    if info.temporary:
        return (
            f'schema "{info.name}" is not trusted for anybody: it is a session\'s temporary '
            "schema, and whichever role holds that session puts objects in it. "
            f"{SCHEMA_TRUST_RULE}. Qualify the name with the schema you mean"
        )
    if not (info.owner_superuser or info.of_extension or info.owner == role):
        who = f'role "{role}"' if role else "every role"
        why = f'it is owned by role "{info.owner}", which is not a superuser'
        fix = f"as a superuser: ALTER SCHEMA {identifier(info.name)} OWNER TO CURRENT_USER"
    elif others:
        who = f'role "{role}"' if role else "every role"
        names = ", ".join(r if r == "PUBLIC" else f'"{r}"' for r in others)
        why = f"{names} can create objects in it"
        creators = [r for r in others if r in info.creators]
        members = [r for r in others if r in info.members and r not in info.creators]
        fix = "; ".join(_revoke_creators(info, creators) + [
            f"REVOKE {identifier(info.owner)} FROM {identifier(r)}" for r in members])  # fmt: skip
    else:
        return None
    return (
        f'schema "{info.name}" is not trusted for {who}: {why}. {SCHEMA_TRUST_RULE}. '
        f"Qualify the name with the schema you mean, or make the schema safe ({fix})"
    )
