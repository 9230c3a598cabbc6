"""Migration folders as each tool lays them out, and their migrations in its order.

Teams keep the runner they have. A folder written for Flyway, golang-migrate,
dbmate, Prisma, Hasura, graphile-migrate, Sqitch or Supabase is read the way that
tool reads it: which files are migrations, in what order, and which files are never
run. A down, revert, undo or verify script is never a migration here, under any
layout: running one destroys what the up migration made.

The layout is found from the folder (a file only one tool writes, or names only one
tool uses); a folder that looks like more than one is refused with the candidates
named, and ``--layout NAME`` says which.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from heal.parser import load as load_parser
from heal.script import INCLUDE_META_COMMANDS, meta_lines


class LayoutError(Exception):
    """The folder cannot be read as migrations."""


@dataclass(frozen=True)
class Migration:
    """One migration: its name in pgheal's history, where it is, what runs."""

    name: str
    path: Path
    text: str
    #: False: each statement runs on its own, committed as it goes (dbmate's
    #: ``transaction:false``, graphile-migrate's ``--! no-transaction``, Flyway's
    #: ``executeInTransaction=false``).
    transaction: bool = True
    #: Flyway's repeatable migrations: applied after the versioned ones, and again
    #: whenever their checksum changes.
    repeatable: bool = False
    #: What the tool's history needs beyond the file (a Sqitch change's plan entry).
    plan: SqitchChange | None = field(default=None, compare=False)
    #: The revisions this one follows (Alembic's down_revision).
    follows: tuple[str, ...] = ()
    #: Not SQL: a migration its own tool runs (Alembic's Python), pgheal only reads its state.
    python: bool = False


@dataclass
class Found:
    """What a folder holds: its layout, its migrations in order, and the files that
    are never run, each with the reason."""

    layout: str
    migrations: list[Migration]
    not_run: list[tuple[Path, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    name: str
    #: One line, for ``--help`` and for the refusal of a folder with no layout.
    describe: str
    #: The files or markers in a folder that say it is laid out this way.
    evidence: Callable[[Path], list[str]]
    read: Callable[[Path], Found]


def _read(path: Path, including: tuple[Path, ...] = ()) -> str:
    """A file's text, with psql's ``\\i`` and ``\\ir`` lines replaced by the files they
    name (``\\ir`` relative to the including file, ``\\i`` to the working directory, as
    psql reads them): the server cannot read files, so pgheal does."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise LayoutError(f"{path}: not UTF-8 text") from None
    if "\\" not in text:
        return text
    includes = [m for m in meta_lines(text, load_parser()) if m[2] in INCLUDE_META_COMMANDS]
    pieces, last = [], 0
    for start, end, command, arguments in includes:
        name = arguments.strip()
        if len(name) > 1 and name[0] == name[-1] == "'":
            name = name[1:-1]
        if not name:
            raise LayoutError(f"{path}: \\{command} names no file")
        base = path.parent if command in ("ir", "include_relative") else Path.cwd()
        target = base / name
        if target.resolve() in (*including, path.resolve()):
            raise LayoutError(f"{path}: \\{command} {name} includes itself")
        if not target.is_file():
            raise LayoutError(f"{path}: \\{command} {name}: no such file {target}")
        _refuse_undoing(target, f", included by {path}")
        if any(m["way"] == "down" for m in _DBMATE_MARKER.finditer(_raw(target))):
            raise LayoutError(f"{target}, included by {path}: it has a -- migrate:down section, "
                              "which would run with it; include only what migrates up")  # fmt: skip
        pieces += [text[last:start], _read(target, (*including, path.resolve()))]
        last = end
    return "".join(pieces) + text[last:]


def _raw(path: Path) -> str:
    """A file's text as it is, to look for a tool's markers in."""
    return path.read_text(errors="replace")


def _sql_files(folder: Path) -> list[Path]:
    # By name: the order of paths in one folder, at a fraction of comparing paths.
    return sorted((p for p in folder.iterdir() if p.suffix == ".sql" and p.is_file()),
                  key=lambda p: p.name)  # fmt: skip


# -- pgheal and Supabase: NNNN_name.sql -----------------------------------------------------------

_NUMBERED = re.compile(r"^(?P<number>\d+)_(?P<name>.+)\.sql$")
_UP_DOWN = re.compile(r"^(?P<version>\d+)_(?P<name>.+)\.(?P<way>up|down)\.sql$")
_DBMATE_MARKER = re.compile(r"^--\s*migrate:(?P<way>up|down)\b(?P<options>[^\n]*)$", re.M)


#: What a script that undoes another is called, in any layout: never a migration.
_UNDOING = re.compile(r"[._-](?:down|rollback|undo|revert)\.sql$", re.I)
#: The same, whatever the file's extension (a file included or linked need not be .sql).
_UNDOING_ANY = re.compile(r"[._-](?:down|rollback|undo|revert)\.[\w.]+$", re.I)


def _plain_numbered(folder: Path) -> list[Path]:
    """NNNN_name.sql files that are neither golang-migrate's, dbmate's nor yoyo's, and
    undo nothing."""
    if _yoyo_evidence(folder):
        return []
    return [
        p for p in _sql_files(folder)
        if _NUMBERED.match(p.name) and not _UP_DOWN.match(p.name)
        and not _UNDOING.search(p.name) and not _DBMATE_MARKER.search(_raw(p))
    ]  # fmt: skip


def _undoing(folder: Path) -> list[tuple[Path, str]]:
    return [(p, "a script that undoes a migration") for p in _sql_files(folder)
            if _UNDOING.search(p.name) and not _UP_DOWN.match(p.name)]  # fmt: skip


def _by_number(files: list[Path]) -> list[Path]:
    return sorted(files, key=lambda p: (int(_NUMBERED.match(p.name)["number"]), p.name))


def _pgheal_evidence(folder: Path) -> list[str]:
    files = _plain_numbered(folder)
    if not files or all(len(_NUMBERED.match(p.name)["number"]) == 14 for p in files):
        return []
    return [p.name for p in files[:3]]


def _supabase_evidence(folder: Path) -> list[str]:
    files = _plain_numbered(folder)
    if not files or not all(len(_NUMBERED.match(p.name)["number"]) == 14 for p in files):
        return []
    return [p.name for p in files[:3]]


def _numbered(layout: str) -> Callable[[Path], Found]:
    def read(folder: Path) -> Found:
        files = _by_number(_plain_numbered(folder))
        return Found(layout, [Migration(p.stem, p, _read(p)) for p in files], _undoing(folder))

    return read


# -- Flyway: V<version>__<description>.sql, R__<description>.sql ----------------------------------

_FLYWAY = re.compile(r"^(?P<kind>[VUR])(?P<version>\d+(?:[._]\d+)*)?__(?P<desc>.+)\.sql$")
_FLYWAY_CONFIGS = ("flyway.conf", "flyway.toml")


def flyway_version(text: str) -> tuple[int, ...]:
    """Flyway compares versions part by part, as numbers; trailing zeros do not count."""
    parts = [int(p) for p in re.split(r"[._]", text)]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _flyway_locations(folder: Path) -> list[Path]:
    """The folders Flyway reads: ``flyway.locations`` of flyway.conf (or ``locations``
    of flyway.toml's [flyway]), relative to the folder; else the folder itself."""
    values: list[str] = []
    conf, toml = folder / "flyway.conf", folder / "flyway.toml"
    if conf.is_file():
        for line in _read(conf).splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "flyway.locations":
                values += [v.strip() for v in value.split(",") if v.strip()]
    elif toml.is_file():
        try:
            data = tomllib.loads(_read(toml))
        except tomllib.TOMLDecodeError as exc:
            raise LayoutError(f"{toml}: {exc}") from None
        locations = data.get("flyway", {}).get("locations", [])
        values += [locations] if isinstance(locations, str) else list(locations)
    if not values:
        sql = folder / "sql"
        return [sql if (conf.is_file() or toml.is_file()) and sql.is_dir() else folder]
    found = []
    for value in values:
        kind, _, where = value.rpartition(":")
        candidates = [folder / where]
        if kind == "classpath":
            candidates.insert(0, folder / "src" / "main" / "resources" / where)
        elif kind not in ("", "filesystem"):
            raise LayoutError(f"{folder}: flyway.locations {value}: only filesystem: and "
                              "classpath: locations can be read from a folder")  # fmt: skip
        path = next((c for c in candidates if c.is_dir()), None)
        if path is None:
            raise LayoutError(f"{folder}: flyway.locations {value}: no such folder "
                              f"({', '.join(str(c) for c in candidates)})")  # fmt: skip
        found.append(path)
    return found


def _flyway_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.sql") if p.is_file() and _FLYWAY.match(p.name))


def _flyway_evidence(folder: Path) -> list[str]:
    configs = [c for c in _FLYWAY_CONFIGS if (folder / c).is_file()]
    files = [p.name for p in _sql_files(folder) if _FLYWAY.match(p.name)]
    return configs + files[:3]


def _read_flyway(folder: Path) -> Found:
    found = Found("flyway", [])
    versioned: dict[tuple[int, ...], Path] = {}
    repeatable: list[Path] = []
    for location in _flyway_locations(folder):
        for path in _flyway_files(location):
            match = _FLYWAY.match(path.name)
            kind, version = match["kind"], match["version"]
            if kind == "U":
                found.not_run.append((path, "Flyway undo migration"))
            elif kind == "R" and version is None:
                repeatable.append(path)
            elif kind == "V" and version is not None:
                key = flyway_version(version)
                if key in versioned:
                    raise LayoutError(f"two Flyway migrations have version {version}: "
                                      f"{versioned[key]} and {path}")  # fmt: skip
                versioned[key] = path
            else:
                found.not_run.append((path, "not a Flyway migration name"))
    ordered = [versioned[k] for k in sorted(versioned)]
    ordered += sorted(repeatable, key=lambda p: _FLYWAY.match(p.name)["desc"])
    for path in ordered:
        found.migrations.append(_flyway_migration(path))
    return found


def _flyway_migration(path: Path) -> Migration:
    """A Flyway script, with its own ``<file>.conf`` (executeInTransaction) honoured."""
    transaction = True
    conf = path.with_name(path.name + ".conf")
    if conf.is_file():
        for line in _read(conf).splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "executeInTransaction":
                transaction = value.strip().lower() != "false"
    return Migration(path.stem, path, _read(path), transaction=transaction,
                     repeatable=path.name.startswith("R__"))  # fmt: skip


# -- golang-migrate: N_name.up.sql, N_name.down.sql -----------------------------------------------


def _golang_evidence(folder: Path) -> list[str]:
    return [p.name for p in _sql_files(folder) if _UP_DOWN.match(p.name)][:3]


def _read_golang(folder: Path) -> Found:
    found = Found("golang-migrate", [])
    ups: dict[int, Path] = {}
    for path in _sql_files(folder):
        match = _UP_DOWN.match(path.name)
        if match is None:
            continue
        if match["way"] == "down":
            found.not_run.append((path, "golang-migrate down migration"))
            continue
        version = int(match["version"])
        if version in ups:
            raise LayoutError(f"two golang-migrate migrations have version {version}: "
                              f"{ups[version]} and {path}")  # fmt: skip
        ups[version] = path
    for version in sorted(ups):
        path = ups[version]
        found.migrations.append(Migration(path.name.removesuffix(".up.sql"), path, _read(path)))
    return found


# -- dbmate: -- migrate:up / -- migrate:down sections ---------------------------------------------


def _dbmate_evidence(folder: Path) -> list[str]:
    return [
        p.name for p in _sql_files(folder)
        if _NUMBERED.match(p.name) and _DBMATE_MARKER.search(_raw(p))
    ][:3]  # fmt: skip


def dbmate_up(path: Path, text: str) -> Migration:
    """The ``-- migrate:up`` section of a dbmate file, at its own lines (so that an error's
    line number is the file's); ``transaction:false`` on the marker line is honoured."""
    markers = list(_DBMATE_MARKER.finditer(text))
    ups = [m for m in markers if m["way"] == "up"]
    if len(ups) != 1:
        raise LayoutError(f"{path}: a dbmate migration has one '-- migrate:up' line "
                          f"(found {len(ups)})")  # fmt: skip
    up = ups[0]
    after = [m.start() for m in markers if m.start() > up.start()]
    section = text[up.end() : after[0] if after else len(text)]
    options = dict(re.findall(r"(\w+):(\S+)", up["options"]))
    return Migration(
        path.stem, path, "\n" * text.count("\n", 0, up.end()) + section,
        transaction=options.get("transaction", "true").lower() != "false",
    )  # fmt: skip


def _read_dbmate(folder: Path) -> Found:
    found = Found("dbmate", [])
    files = [p for p in _sql_files(folder) if _NUMBERED.match(p.name)]
    for path in _by_number(files):
        text = _read(path)
        if not _DBMATE_MARKER.search(text):
            raise LayoutError(f"{path}: a dbmate migration needs a '-- migrate:up' line")
        found.migrations.append(dbmate_up(path, text))
        if re.search(r"^--\s*migrate:down\b", text, re.M):
            found.not_run.append((path, "its -- migrate:down section"))
    return found


# -- Prisma and Hasura: one folder a migration ----------------------------------------------------

_MIGRATION_FOLDER = re.compile(r"^(?P<version>\d+)_(?P<name>.+)$")


def _folders_with(folder: Path, script: str) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_dir() and _MIGRATION_FOLDER.match(p.name) and (p / script).is_file()
    )  # fmt: skip


def _prisma_evidence(folder: Path) -> list[str]:
    lock = ["migration_lock.toml"] if (folder / "migration_lock.toml").is_file() else []
    return lock + [f"{p.name}/migration.sql" for p in _folders_with(folder, "migration.sql")][:3]


def _read_prisma(folder: Path) -> Found:
    # Prisma applies its folders in the order of their names.
    return Found("prisma", [
        Migration(p.name, p / "migration.sql", _read(p / "migration.sql"))
        for p in _folders_with(folder, "migration.sql")
    ])  # fmt: skip


def _hasura_evidence(folder: Path) -> list[str]:
    return [f"{p.name}/up.sql" for p in _folders_with(folder, "up.sql")][:3]


def _read_hasura(folder: Path) -> Found:
    found = Found("hasura", [])
    for p in sorted(_folders_with(folder, "up.sql"),
                    key=lambda p: int(_MIGRATION_FOLDER.match(p.name)["version"])):  # fmt: skip
        found.migrations.append(Migration(p.name, p / "up.sql", _read(p / "up.sql")))
        if (p / "down.sql").is_file():
            found.not_run.append((p / "down.sql", "Hasura down migration"))
    return found


# -- graphile-migrate: committed/000001.sql -------------------------------------------------------

_GRAPHILE = re.compile(r"^(?P<number>\d+)(?:-[^/]*)?\.sql$")
_GRAPHILE_HEADER = re.compile(r"^--! (?P<key>[A-Za-z-]+)(?::[^\n]*)?$", re.M)


def _graphile_committed(folder: Path) -> Path | None:
    """The ``committed`` folder: inside `folder`, or `folder` itself."""
    for candidate in (folder / "committed", folder):
        if (
            candidate.name == "committed"
            and candidate.is_dir()
            and any(_GRAPHILE.match(p.name) for p in _sql_files(candidate))
        ):
            return candidate
    return None


def _graphile_evidence(folder: Path) -> list[str]:
    committed = _graphile_committed(folder)
    if committed is None:
        return []
    prefix = "" if committed == folder else "committed/"
    return [prefix + p.name for p in _sql_files(committed) if _GRAPHILE.match(p.name)][:3]


def graphile_migration(path: Path, text: str) -> Migration:
    """A committed graphile-migrate file: its ``--!`` header lines (Previous, Hash,
    Message) are comments to PostgreSQL; ``--! no-transaction`` is honoured."""
    keys = set()
    for line in text.splitlines():
        match = _GRAPHILE_HEADER.match(line)
        if match is None:
            break
        keys.add(match["key"].lower())
    number = _GRAPHILE.match(path.name)["number"]
    return Migration(number, path, text, transaction="no-transaction" not in keys)


def _read_graphile(folder: Path) -> Found:
    committed = _graphile_committed(folder) or folder / "committed"
    found = Found("graphile-migrate", [])
    files = [p for p in _sql_files(committed) if _GRAPHILE.match(p.name)]
    for path in sorted(files, key=lambda p: int(_GRAPHILE.match(p.name)["number"])):
        found.migrations.append(graphile_migration(path, _read(path)))
    current = committed.parent / "current.sql"
    if current.is_file() and committed != folder:
        found.not_run.append((current, "graphile-migrate's uncommitted current.sql"))
    return found


# -- Sqitch: sqitch.plan and deploy/ --------------------------------------------------------------

_SQITCH_CHANGE = re.compile(r"^(?P<op>[+-])?(?P<name>[^\s\[@:#]+)")
_SQITCH_LINE = re.compile(
    r"^[+]?(?P<name>[^\s\[@:#]+)(?:\s+\[(?P<deps>[^\]]*)\])?\s+(?P<date>\S+)\s+"
    r"(?P<planner>.*?)\s*<(?P<email>[^>]*)>(?:\s*#\s?(?P<note>.*))?$"
)


#: A change name as Sqitch allows it (App::Sqitch::Plan): no blanks, ``:``, ``@`` or
#: ``#``, neither first nor last character punctuation, no ``^N``-style reference.
_SQITCH_PUNCT = re.escape("""-!"#$%&'()*+,./:;<=>?@[\\]^`{|}~""")
_SQITCH_NAME = re.compile(
    rf"^(?![{_SQITCH_PUNCT}])(?:(?![~/=%^]\d+(?:$|[ \t]))[^ \t:@#])+(?<![{_SQITCH_PUNCT}])$"
)


def _sqitch_script(folder: Path, plan: Path, name: str) -> Path:
    """deploy/<name>.sql, for a name Sqitch accepts and that stays inside deploy/."""
    change = name.split("@")[0]
    if not _SQITCH_NAME.match(change) or any(p in ("", ".", "..") for p in change.split("/")):
        raise LayoutError(f"{plan}: {change!r} is not a Sqitch change name")
    deploy = folder / "deploy"
    script = deploy / f"{name}.sql"
    if not script.is_file():
        raise LayoutError(f"{plan}: change {name} has no deploy script {script}")
    if not script.resolve().is_relative_to(deploy.resolve()):
        raise LayoutError(f"{plan}: change {name}: {script} is outside {deploy} (a link to "
                          f"{script.resolve()}); Sqitch deploys only deploy/ scripts")  # fmt: skip
    return script


@dataclass(frozen=True)
class SqitchChange:
    """A change's entry in sqitch.plan: what Sqitch derives its change id from."""

    project: str
    uri: str | None
    name: str
    date: str
    planner: str
    email: str
    note: str
    requires: tuple[str, ...]
    conflicts: tuple[str, ...]
    #: The change before it in the plan (its entry), and the tags right after it.
    parent: SqitchChange | None
    tags: tuple[tuple[str, str, str, str, str], ...] = ()  # (tag, date, planner, email, note)


def _sqitch_evidence(folder: Path) -> list[str]:
    return ["sqitch.plan"] if (folder / "sqitch.plan").is_file() else []


def _read_sqitch(folder: Path) -> Found:
    """The changes in the plan's order. A change reworked later in the plan deploys,
    where it first stands, the script ``deploy/<change>@<the next tag>.sql``."""
    plan = folder / "sqitch.plan"
    pragmas: dict[str, str] = {}
    entries: list[tuple[str, int, str]] = []  # (change or @tag, line number, line)
    for number, line in enumerate(_raw(plan).splitlines(), 1):
        line = line.strip()
        if line.startswith("%"):
            key, _, value = line[1:].partition("=")
            pragmas[key.strip()] = value.strip()
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            entries.append((line.split()[0], number, line))
            continue
        match = _SQITCH_CHANGE.match(line)
        if match is None or match["op"] == "-":
            raise LayoutError(f"{plan}, line {number}: not a change pgheal can deploy")
        entries.append((match["name"], number, line))
    found = Found("sqitch", [])
    parent: SqitchChange | None = None
    for index, (entry, number, line) in enumerate(entries):
        if entry.startswith("@"):
            continue
        later = [e for e, _, _ in entries[index + 1 :]]
        name = entry
        if entry in later:  # reworked: this one is the version as of the next tag
            tag = next((e for e in later if e.startswith("@")), None)
            if tag is None:
                raise LayoutError(f"{plan}: change {entry} is reworked without a tag between")
            name = f"{entry}{tag}"
        script = _sqitch_script(folder, plan, name)
        parent = _sqitch_change(pragmas, entry, line, entries[index + 1 :], parent, plan, number)
        found.migrations.append(Migration(name, script, _read(script), plan=parent))
    for kind in ("revert", "verify"):
        found.not_run += [(p, f"Sqitch {kind} script")
                          for p in sorted((folder / kind).glob("*.sql"))]  # fmt: skip
    return found


def _sqitch_change(
    pragmas: dict[str, str], name: str, line: str, after: list, parent: SqitchChange | None,
    plan: Path, number: int,
) -> SqitchChange:  # fmt: skip
    match = _SQITCH_LINE.match(line)
    if match is None:
        raise LayoutError(f"{plan}, line {number}: a change needs its date and planner")
    deps = (match["deps"] or "").split()
    tags = []
    for entry, _, tag_line in after:
        if not entry.startswith("@"):
            break
        tag = re.match(r"^(?P<tag>@\S+)\s+(?P<date>\S+)\s+(?P<planner>.*?)\s*<(?P<email>[^>]*)>"
                       r"(?:\s*#\s?(?P<note>.*))?$", tag_line)  # fmt: skip
        if tag is not None:
            tags.append((tag["tag"], tag["date"], tag["planner"], tag["email"],
                         tag["note"] or ""))  # fmt: skip
    return SqitchChange(
        project=pragmas.get("project", ""), uri=pragmas.get("uri"), name=name,
        date=match["date"], planner=match["planner"], email=match["email"],
        note=match["note"] or "", requires=tuple(d for d in deps if not d.startswith("!")),
        conflicts=tuple(d[1:] for d in deps if d.startswith("!")), parent=parent,
        tags=tuple(tags),
    )  # fmt: skip


# -- yoyo: NAME.sql, NAME.rollback.sql, -- depends: -----------------------------------------------

_YOYO_DEPENDS = re.compile(r"^--\s*depends:(?P<on>[^\n]*)$", re.M)


def _yoyo_evidence(folder: Path) -> list[str]:
    marks = ["yoyo.ini"] if (folder / "yoyo.ini").is_file() else []
    return marks + [p.name for p in _sql_files(folder) if p.name.endswith(".rollback.sql")][:3]


def _read_yoyo(folder: Path) -> Found:
    """Each NAME.sql in name order, after the migrations its ``-- depends:`` line names,
    as yoyo orders them; NAME.rollback.sql is never run."""
    found = Found("yoyo", [], [(p, "yoyo rollback") for p in _sql_files(folder)
                               if p.name.endswith(".rollback.sql")])  # fmt: skip
    scripts = {p.stem: p for p in _sql_files(folder) if not p.name.endswith(".rollback.sql")}
    depends = {
        name: [d for d in " ".join(m["on"] for m in _YOYO_DEPENDS.finditer(_raw(p))).split()]
        for name, p in scripts.items()
    }
    done: list[str] = []

    def visit(name: str, seen: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in seen:
            raise LayoutError(f"{folder}: yoyo migrations depend on each other in a circle: "
                              + " -> ".join((*seen, name)))  # fmt: skip
        for dependency in depends.get(name, []):
            if dependency not in scripts:
                raise LayoutError(f"{scripts[name]}: depends on {dependency}, which is not here")
            visit(dependency, (*seen, name))
        done.append(name)

    for name in sorted(scripts):
        visit(name, ())
    found.migrations = [Migration(n, scripts[n], _read(scripts[n])) for n in done]
    return found


# -- Alembic: Python revisions, read for their state ----------------------------------------------


def _alembic_versions(folder: Path) -> Path | None:
    for candidate in (folder / "versions", folder / "migrations" / "versions",
                      folder / "alembic" / "versions"):  # fmt: skip
        if candidate.is_dir() and (candidate.parent / "env.py").is_file():
            return candidate
    return None


def _alembic_evidence(folder: Path) -> list[str]:
    versions = _alembic_versions(folder)
    if versions is None:
        return []
    return [str(versions.parent.relative_to(folder) / "env.py")]


def _alembic_revision(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """(revision, the revisions it follows) of an Alembic script, read without running it."""
    try:
        tree = ast.parse(_raw(path))
    except SyntaxError:
        raise LayoutError(f"{path}: not Python") from None
    values: dict[str, object] = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) and node.value else [])  # fmt: skip
        for target in targets:
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    values[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    raise LayoutError(f"{path}: {target.id} is not a literal") from None
    if not isinstance(values.get("revision"), str):
        return None
    down = values.get("down_revision")
    follows = (down,) if isinstance(down, str) else tuple(down or ())
    return str(values["revision"]), tuple(str(d) for d in follows)


def _read_alembic(folder: Path) -> Found:
    """Alembic's revisions, parents first. They are Python: pgheal reads their state
    (``pgheal info``), and heals around ``alembic upgrade`` (``pgheal run``)."""
    versions = _alembic_versions(folder) or folder / "versions"
    revisions = {}
    for path in sorted(versions.glob("*.py")):
        found = _alembic_revision(path)
        if found is not None:
            revisions[found[0]] = (path, found[1])
    ordered: list[str] = []

    def visit(revision: str, seen: tuple[str, ...]) -> None:
        if revision in ordered or revision not in revisions:
            return
        if revision in seen:
            raise LayoutError(f"{versions}: revisions follow each other in a circle")
        for parent in revisions[revision][1]:
            visit(parent, (*seen, revision))
        ordered.append(revision)

    for revision in sorted(revisions):
        visit(revision, ())
    return Found("alembic", [
        Migration(r, revisions[r][0], "", follows=revisions[r][1], python=True) for r in ordered
    ])  # fmt: skip


#: Every layout, in the order ``--help`` lists them.
LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout("pgheal", "NNNN_name.sql, in numeric order", _pgheal_evidence, _numbered("pgheal")),
        Layout("supabase", "YYYYMMDDHHMMSS_name.sql (supabase/migrations)",
               _supabase_evidence, _numbered("supabase")),
        Layout("flyway", "V<version>__name.sql, then R__name.sql; U undo files never run",
               _flyway_evidence, _read_flyway),
        Layout("golang-migrate", "N_name.up.sql; .down.sql never run",
               _golang_evidence, _read_golang),
        Layout("dbmate", "NNNN_name.sql with -- migrate:up; the down section never runs",
               _dbmate_evidence, _read_dbmate),
        Layout("prisma", "<timestamp>_name/migration.sql", _prisma_evidence, _read_prisma),
        Layout("hasura", "<timestamp>_name/up.sql; down.sql never runs",
               _hasura_evidence, _read_hasura),
        Layout("graphile-migrate", "committed/000001.sql", _graphile_evidence, _read_graphile),
        Layout("sqitch", "sqitch.plan and deploy/; revert/ and verify/ never run",
               _sqitch_evidence, _read_sqitch),
        Layout("yoyo", "NAME.sql with yoyo.ini or NAME.rollback.sql; rollbacks never run",
               _yoyo_evidence, _read_yoyo),
        Layout("alembic", "env.py and versions/*.py: Python, whose state pgheal reads",
               _alembic_evidence, _read_alembic),
    )
}  # fmt: skip


def undoes(path: Path) -> str | None:
    """What `path` is when, in any layout, it undoes a migration (and so never runs,
    whether named, found in a folder, reached through a link or included), else None."""
    name = path.name
    if ((match := _UP_DOWN.match(name)) and match["way"] == "down") or _UNDOING_ANY.search(name):
        return "a down migration"
    if name == "down.sql":
        return "a down migration"
    if path.parent.name in ("revert", "verify") and (path.parent.parent / "sqitch.plan").exists():
        return f"a Sqitch {path.parent.name} script"
    flyway = _FLYWAY.match(name)
    if flyway and flyway["kind"] == "U":
        return "a Flyway undo migration"
    return None


def _refuse_undoing(path: Path, why: str = "") -> None:
    """Refuse `path` when it, or the file it links to, undoes a migration."""
    for candidate in dict.fromkeys((path, path.resolve())):
        what = undoes(candidate)
        if what is not None:
            shown = path if candidate == path else f"{path} (a link to {candidate})"
            raise LayoutError(f"{shown}{why}: {what}; pgheal never runs one")


def read_folder(folder: Path, layout: str | None = None) -> Found:
    """The migrations of `folder`, laid out as `layout` or as its files say."""
    if layout is not None:
        if layout not in LAYOUTS:
            raise LayoutError(f"no layout {layout!r}; the layouts are: {', '.join(LAYOUTS)}")
        chosen = LAYOUTS[layout]
    else:
        seen = {name: ev for name, kind in LAYOUTS.items() if (ev := kind.evidence(folder))}
        if not seen:
            raise LayoutError(
                f"{folder}: no migrations in a layout pgheal knows; it reads "
                + "; ".join(f"{name} ({kind.describe})" for name, kind in LAYOUTS.items())
            )
        if len(seen) > 1:
            raise LayoutError(
                f"{folder}: the layout is ambiguous: "
                + "; ".join(f"{name} ({', '.join(ev)})" for name, ev in seen.items())
                + ". Pass --layout NAME to say which, or move the other files out."
            )
        chosen = LAYOUTS[next(iter(seen))]
    found = chosen.read(folder)
    if not found.migrations:
        raise LayoutError(f"{folder}: no {chosen.name} migrations ({chosen.describe})")
    for migration in found.migrations:
        _refuse_undoing(migration.path)
    _refuse_hard_links([m.path for m in found.migrations], folder)
    return found


def _refuse_hard_links(paths: list[Path], folder: Path) -> None:
    """A hard link to a down script is the same file under another name: refuse any of
    `paths` that is one to a down, undo or revert script under `folder`."""
    undoing = {(p.stat().st_dev, p.stat().st_ino): p for p in folder.rglob("*")
               if p.is_file() and undoes(p)}  # fmt: skip
    for path in paths:
        same = undoing.get((path.stat().st_dev, path.stat().st_ino))
        if same is not None:
            raise LayoutError(f"{path}: the same file as {same} ({undoes(same)}); "
                              "pgheal never runs one")  # fmt: skip


def read_file(path: Path) -> tuple[Migration, tuple[str, tuple] | None]:
    """One file given by name: the migration in it, and how its layout orders it
    (None: it keeps its place). A down, undo or revert script is refused."""
    _refuse_undoing(path)
    _refuse_hard_links([path], path.parent)
    name, text = path.name, _read(path)
    match, flyway = _UP_DOWN.match(name), _FLYWAY.match(name)
    if flyway and (flyway["kind"] == "R") == (flyway["version"] is None):
        key = (1, (), flyway["desc"]) if flyway["kind"] == "R" else (
            0, flyway_version(flyway["version"]), "")  # fmt: skip
        return _flyway_migration(path), ("flyway", key)
    if match:
        return Migration(name.removesuffix(".up.sql"), path, text), (
            "golang-migrate", (int(match["version"]),))  # fmt: skip
    if _NUMBERED.match(name) and _DBMATE_MARKER.search(text):
        return dbmate_up(path, text), ("dbmate", (int(_NUMBERED.match(name)["number"]),))
    return Migration(path.stem, path, text), None
