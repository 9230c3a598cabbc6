"""The ``pgheal`` command.

Exit codes: 0 success; 1 a migration failed, a plan has a problem with no allowed
fix, status found an error, doctor found anything to look at; 2 bad usage, a
missing prerequisite or no connection.

Each command imports the modules it uses, where it runs: a ``pgheal migrate`` in a
deploy pipeline should not pay for the monitoring, network and installer code.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from . import __version__, layouts, problems, serverdeps, session

EPILOG = """\
The connection comes from --dsn, else $PGHEAL_DSN, else libpq's environment
(PGHOST, PGDATABASE, PGUSER, ...), like psql.

examples:
  pgheal demo --keep
  pgheal install --dsn postgresql://postgres@localhost/app
  pgheal migrate --dsn postgresql://app@localhost/app db/migrations/
  pgheal migrate --plan db/migrations/
  pgheal plan db/0002_users.sql
  pgheal status
  pgheal doctor --json
  pgheal events --since 30m --follow
  pgheal uninstall
"""


#: psql's connection options: (flags, conninfo keyword, help).
CONNECTION_OPTIONS = (
    (("-h", "--host"), "host", "database server host or socket directory"),
    (("-p", "--port"), "port", "database server port"),
    (("-U", "--username"), "user", "database user name"),
    (("-d", "--dbname"), "dbname", "database name"),
)


def _dsn(args: argparse.Namespace) -> str:
    """--dsn (else $PGHEAL_DSN, else libpq's environment), with -h -p -U -d and a
    password asked for on top, as psql combines them."""
    given = {key: getattr(args, key, None) for _, key, _ in CONNECTION_OPTIONS}
    given["password"] = getattr(args, "password_given", None)
    base = getattr(args, "dsn", None) or os.environ.get("PGHEAL_DSN", "")
    return make_conninfo(base, **{k: v for k, v in given.items() if v})


def _connect(args: argparse.Namespace) -> psycopg.Connection:
    """A connection; on a terminal, the password is asked for when the server wants one
    (or first, with -W), as psql does."""
    if getattr(args, "password", False) and not getattr(args, "password_given", None):
        args.password_given = getpass.getpass("Password: ")
    try:
        conn = psycopg.connect(_dsn(args), autocommit=True)
    except psycopg.OperationalError as exc:
        wants = "no password supplied" in str(exc)
        if not wants or getattr(args, "no_password", False) or not sys.stdin.isatty():
            raise
        args.password_given = getpass.getpass("Password: ")
        conn = psycopg.connect(_dsn(args), autocommit=True)
    return session.take(conn)  # pgheal's own queries on its own path


def _say(args: argparse.Namespace, text: str, **fields: object) -> None:
    """One result: a line for people, or (with --json) an object for machines."""
    print(json.dumps({"message": text, **fields}) if args.json else text)


def cmd_install(args: argparse.Namespace) -> int:
    from . import deploy, monitor, schedule

    out = monitor.console(sys.stderr)
    with _connect(args) as conn:
        with out.status("installing pgheal (parsing the server's extension scripts) ..."):
            report = deploy.install(conn, args.python_path)
        dbname = conn.info.dbname
        scheduled = None if args.no_schedule else schedule.schedule(_dsn(args), conn, args.every)
    action = f"upgraded from {report.upgraded_from}" if report.upgraded_from else "installed"
    if args.json:
        print(json.dumps({**report.__dict__, "database": dbname,
                          "scheduled": scheduled.__dict__ if scheduled else None}))  # fmt: skip
        return 0
    print(f"pgheal {report.version} {action} in database {dbname}")
    if report.scripts_applied:
        print(f"  schema scripts applied: {', '.join(report.scripts_applied)}")
    if report.adopted:
        print(f"  {report.adopted}")
    print(f"  server pglast {report.pglast} from {args.python_path}")
    print(f"  extension catalog: {report.extension_objects} objects")
    print("  grant heal_operator to the roles that may run heal.migrate")
    if scheduled is not None:
        print(f"  {scheduled.message}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from . import schedule

    with _connect(args) as conn:
        result = schedule.schedule(_dsn(args), conn, args.every)
    _say(args, result.message, ok=result.ok)
    return 0 if result.ok else 2


def cmd_unschedule(args: argparse.Namespace) -> int:
    from . import schedule

    with _connect(args) as conn:
        if args.orphans:
            result = schedule.unschedule_orphans(_dsn(args), conn)
        else:
            result = schedule.unschedule(_dsn(args), conn)
    _say(args, result.message, ok=result.ok, removed=result.removed)
    return 0


def cmd_predictive(args: argparse.Namespace) -> int:
    with _connect(args) as conn:
        conn.execute("UPDATE heal.settings SET value = %s WHERE name = 'predictive'", (args.state,))
    _say(args, f"predictive healing of DDL from any client is {args.state}", state=args.state)
    return 0


def cmd_patterns(args: argparse.Namespace) -> int:
    from . import patterns

    with _connect(args) as conn:
        if args.action == "list":
            rows = patterns.listing(conn)
            if args.json:
                print(json.dumps(rows))
                return 0
            for r in rows:
                state = "on " if r["enabled"] else "off"
                print(
                    f"{r['id']:>4} {state} {r['fix_kind']} {r['fix_target']} (confidence "
                    f"{r['confidence']}, applied {r['applied']}): {r['message']}"
                )
            if not rows:
                print("no learned patterns yet")
        elif args.action in ("disable", "enable"):
            if args.id is None:
                raise problems.CommandError(f"pgheal patterns {args.action} needs a pattern id")
            if not patterns.set_enabled(conn, args.id, args.action == "enable"):
                raise problems.CommandError(f"no learned pattern with id {args.id}")
            _say(args, f"pattern {args.id} {args.action}d", id=args.id,
                 enabled=args.action == "enable")  # fmt: skip
        elif args.action == "export":
            text = patterns.export(conn)
            if args.file:
                args.file.write_text(text + "\n")
                _say(args, f"patterns written to {args.file}", file=str(args.file))
            else:
                print(text)  # JSON already
        elif args.action == "import":
            text = args.file.read_text() if args.file else sys.stdin.read()
            count = patterns.import_(conn, text)
            _say(args, f"imported {count} patterns", imported=count)
    return 0


def cmd_network(args: argparse.Namespace) -> int:
    from . import network

    if args.action in ("join",) and not args.hub:
        raise network.NetworkError("pgheal network join needs --hub HUB (the hub's connection)")
    with _connect(args) as conn:
        hub = _connect_to(args.hub) if args.hub else None
        try:
            result = _network_action(args, conn, hub)
        finally:
            if hub is not None:
                hub.close()
    if args.json:
        print(json.dumps(result))
        return 0
    for line in _network_lines(args.action, result):
        print(line)
    return 0


def _network_action(
    args: argparse.Namespace, conn: psycopg.Connection, hub: psycopg.Connection | None
) -> Any:
    from . import network

    if args.action == "hub":
        return network.hub(conn).__dict__
    if args.action == "join":
        assert hub is not None
        return network.join(conn, hub, _dsn(args), args.hub, args.member_conninfo,
                            args.hub_conninfo).__dict__  # fmt: skip
    if args.action == "leave" and args.member:
        return network.forget(conn, args.member).__dict__
    if args.action == "leave":
        return network.leave(conn, hub).__dict__
    return network.status(conn)


def _network_lines(action: str, result: Any) -> list[str]:
    """What a network command did, for people."""
    if action == "hub":
        return [f"hub {'set up' if result['created'] else 'ready'}: publication "
                f"{result['publication']}, {result['members']} members, "
                f"{result['patterns']} merged patterns"]  # fmt: skip
    if action == "join":
        return [f"joined as member {result['member_id']} ({result['shared']} patterns shared); "
                f"subscriptions: {result['subscriptions']['hub']} on the hub, "
                f"{result['subscriptions']['member']} here"]  # fmt: skip
    if action == "leave":
        gone = result["removed"] or result["left_behind"]
        lines = [f"member {result['member_id']} " + ("left the network" if gone else
                 "was in no network: nothing to remove")]  # fmt: skip
        lines += [f"  removed {what}" for what in result["removed"]]
        lines += [f"  left behind: {what}" for what in result["left_behind"]]
        return lines
    lines = []
    for r in result:
        if r["subscription"] is None:
            lines.append(f"{r['role']} {r['member_id']}: no subscriptions; "
                         f"{r['patterns_out']} patterns out")  # fmt: skip
            continue
        state = ("running" if r["running"] else "not running") if r["enabled"] else "disabled"
        lag = f"{r['lag_seconds']:.3f} s" if r["lag_seconds"] is not None else "-"
        lines.append(f"{r['role']} {r['member_id']} <- {r['peer']} ({r['subscription']}): "
                     f"{state}, last sync {r['last_sync'] or 'never'}, lag {lag}, "
                     f"{r['patterns_in']} patterns in, {r['patterns_out']} out")  # fmt: skip
    return lines


def _connect_to(dsn: str) -> psycopg.Connection:
    """The hub's connection (--hub); a failure says it was the hub's."""
    from . import network

    try:
        return session.take(psycopg.connect(dsn, autocommit=True))
    except psycopg.OperationalError as exc:
        raise network.NetworkError(
            f"cannot connect to the hub (--hub): {str(exc).strip()}; a member can leave a hub "
            "that is gone for good without --hub"
        ) from None


def cmd_uninstall(args: argparse.Namespace) -> int:
    from . import deploy, schedule

    with _connect(args) as conn:
        dbname = conn.info.dbname
        what = ("pgheal and its migration history" if args.drop_history else
                "pgheal (its migration history is kept for a later install)")  # fmt: skip
        if not args.yes:
            if not sys.stdin.isatty():
                raise problems.CommandError(
                    f"this removes {what} from database {dbname}: pass --yes to confirm "
                    "(no terminal to ask on)"
                )
            answer = input(f"Remove {what} from database {dbname}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                _say(args, "nothing removed", removed=False)
                return 0
        summary, *notes = deploy.uninstall(conn, keep_history=not args.drop_history)
        # Only once pgheal is gone: a refused uninstall leaves the scan scheduled.
        unscheduled = schedule.unschedule(_dsn(args), conn)
    notes.append(unscheduled.message)
    if args.json:
        print(json.dumps({"message": summary, "notes": notes, "removed": True,
                          "jobs_removed": unscheduled.removed}))  # fmt: skip
        return 0
    print(summary)
    for note in notes:
        print(f"  {note}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from . import runner

    found = runner.discover(args.paths, args.layout)
    for path, why in found.not_run:
        print(f"not run: {path} ({why})", file=sys.stderr)
    migrations = found.migrations
    with _connect(args) as conn:
        run = runner.Runner(conn, sys.stderr if args.json else sys.stdout,
                            rerun=["pgheal", *args.argv])  # fmt: skip
        if args.plan:
            rows = run.plan(migrations, found.layout)
            if args.json:
                keys = ("migration", "line", "missing", "fix", "allowed", "reason")
                print(json.dumps([dict(zip(keys, r, strict=True)) for r in rows]))
            else:
                run.print_plan(rows)
            return 0 if all(r[4] for r in rows) else 1
        outcomes = run.run(migrations, dry_run=args.dry_run, layout=found.layout,
                           force=frozenset(getattr(args, "force", None) or ()))  # fmt: skip
        if args.json:
            print(json.dumps([o.__dict__ for o in outcomes]))
        else:
            run.summary(outcomes)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def cmd_info(args: argparse.Namespace) -> int:
    from . import runner

    found = runner.discover(args.paths, args.layout)
    with _connect(args) as conn:
        run = runner.Runner(conn, sys.stdout)
        rows = run.info(found.migrations, found.layout)
        if args.json:
            print(json.dumps(rows))
        else:
            run.print_info(rows)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from . import runner

    found = runner.discover(args.paths, args.layout)
    with _connect(args) as conn:
        done = runner.Runner(conn, sys.stdout).baseline(found.migrations, found.layout, args.to)
    _say(args, f"recorded as applied, without running them: {len(done)} migrations",
         migrations=done)  # fmt: skip
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from . import around

    command = args.tool[1:] if args.tool[:1] == ["--"] else args.tool
    if not command:
        print("pgheal run: name the command to run after --, e.g. pgheal run -- dbmate up",
              file=sys.stderr)  # fmt: skip
        return 2
    with _connect(args) as conn:
        outcome = around.run(conn, command, attempts=args.attempts)
    if args.json:
        print(json.dumps({
            "exit_code": outcome.exit_code, "runs": outcome.runs, "notes": outcome.notes,
            "heals": [{"sqlstate": h.error.sqlstate, "message": h.error.message,
                       "role": h.error.role, "fixed": h.fixed, "fix": h.fix,
                       "reason": h.reason} for h in outcome.heals],
        }), file=sys.stderr)  # fmt: skip
    else:
        for heal in outcome.heals:
            said = f"healed: {heal.fix}" if heal.fixed else f"not healed: {heal.reason}"
            print(f"pgheal run: {heal.error.message}: {said}", file=sys.stderr)
        for note in outcome.notes:
            print(f"pgheal run: {note}", file=sys.stderr)
    return outcome.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    from . import monitor

    with _connect(args) as conn:
        return monitor.print_status(conn, _dsn(args), sys.stdout, args.json)


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import monitor

    with _connect(args) as conn:
        return monitor.print_doctor(conn, _dsn(args), sys.stdout, args.json)


def cmd_events(args: argparse.Namespace) -> int:
    from . import monitor

    window = monitor.since(args.since)
    with _connect(args) as conn:
        monitor.print_events(monitor.events(conn, window), sys.stdout, args.json,
                             table=not args.follow)  # fmt: skip
        if args.follow:
            with contextlib.suppress(KeyboardInterrupt), _connect(args) as reader:
                new = monitor.follow(conn, reader, args.count)  # Ctrl-C ends it
                monitor.print_events(new, sys.stdout, args.json, table=False)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    args.plan, args.dry_run = True, False
    return cmd_migrate(args)


def cmd_server_deps(args: argparse.Namespace) -> int:
    path, installed = serverdeps.install(args.target, args.python_version)
    state = "installed" if installed else "already present"
    _say(args, f"pglast for the server's Python: {state} in {path}", path=str(path),
         installed=installed)  # fmt: skip
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.run(keep=args.keep, as_json=args.json)


def _connection(p: argparse.ArgumentParser, before: bool) -> None:
    """psql's connection options, taken before the command (`before`) or after it: the
    command's own copies leave unset what was given before."""
    unset = None if before else argparse.SUPPRESS
    group = p.add_argument_group("connection options (as psql's)")
    group.add_argument(
        "--dsn", default=unset, help="connection string (default: $PGHEAL_DSN, libpq's environment)"
    )
    for flags, key, help in CONNECTION_OPTIONS:
        group.add_argument(*flags, dest=key, default=unset, help=help)
    group.add_argument(
        "-W",
        "--password",
        action="store_true",
        default=False if before else argparse.SUPPRESS,
        help="ask for the password before connecting",
    )
    group.add_argument("-w", "--no-password", action="store_true", default=False if before
                       else argparse.SUPPRESS, help="never ask for a password")  # fmt: skip


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="pgheal",
        description="PostgreSQL migrations that heal themselves.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,  # -h is the host, as in psql
    )
    top.add_argument("-?", "--help", action="help", help="show this help and exit")
    top.add_argument("--version", action="version", version=f"pgheal {__version__}")
    top.add_argument("--json", action="store_true", default=False, help="JSON for machines")
    _connection(top, before=True)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=EPILOG, add_help=False,
                           formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
        p.add_argument("-?", "--help", action="help", help="show this help and exit")
        p.set_defaults(func=func)
        # Every command speaks JSON, asked for before the command or after it.
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                       help="JSON for machines")  # fmt: skip
        return p

    def dsn(p: argparse.ArgumentParser) -> None:
        _connection(p, before=False)

    p = command("install", cmd_install, "deploy or upgrade pgheal in a database (one transaction)")
    dsn(p)
    p.add_argument(
        "--python-path",
        type=Path,
        default=serverdeps.default_path(),
        help="directory with the server's pglast (default: %(default)s)",
    )
    p.add_argument("--every", metavar="CRON", help="scan schedule (default: */5 * * * *)")
    p.add_argument("--no-schedule", action="store_true", help="do not schedule the scan")
    p = command("uninstall", cmd_uninstall, "remove pgheal's objects from a database")
    dsn(p)
    p.add_argument("-y", "--yes", action="store_true",
                   help="do not ask (needed where there is no terminal to ask on)")  # fmt: skip
    p.add_argument("--drop-history", action="store_true",
                   help="remove the migration history too (kept by default, in schema "
                   "heal_history, for the next install to adopt)")  # fmt: skip
    p = command("schedule", cmd_schedule, "schedule heal.scan() with pg_cron")
    dsn(p)
    p.add_argument("--every", metavar="CRON", help="cron schedule, GMT (default: the setting)")
    p = command("unschedule", cmd_unschedule, "remove the scheduled heal.scan()")
    dsn(p)
    p.add_argument("--orphans", action="store_true",
                   help="instead, remove pgheal's jobs of every database that was dropped "
                   "or no longer has pgheal")  # fmt: skip
    p = command("predictive", cmd_predictive, "turn healing of DDL from any client on or off")
    dsn(p)
    p.add_argument("state", choices=("on", "off"))
    p = command("patterns", cmd_patterns, "list, disable, export or import learned patterns")
    dsn(p)
    p.add_argument("action", choices=("list", "disable", "enable", "export", "import"))
    p.add_argument("id", nargs="?", type=int, help="pattern id (disable, enable)")
    p.add_argument("--file", type=Path, help="JSON file (export, import; default stdout/stdin)")
    layout_help = "the folder's layout, when its files do not say: " + ", ".join(layouts.LAYOUTS)
    p = command(
        "migrate", cmd_migrate,
        "apply migration files, or folders in any migration tool's layout, in order",
    )  # fmt: skip
    dsn(p)
    p.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    p.add_argument("--dry-run", action="store_true", help="run and heal, then roll back")
    p.add_argument("--plan", action="store_true", help="only show what would be healed")
    p.add_argument("--layout", choices=list(layouts.LAYOUTS), metavar="NAME", help=layout_help)
    p.add_argument("--force", action="append", metavar="NAME",
                   help="run migration NAME again, although it changed since it ran")  # fmt: skip
    p = command("plan", cmd_plan, "show what pending migrations will miss and how pgheal heals it")
    dsn(p)
    p.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    p.add_argument("--layout", choices=list(layouts.LAYOUTS), metavar="NAME", help=layout_help)
    p = command("info", cmd_info, "each migration's state: applied (by pgheal or its tool), "
                "pending, changed or failed")  # fmt: skip
    dsn(p)
    p.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    p.add_argument("--layout", choices=list(layouts.LAYOUTS), metavar="NAME", help=layout_help)
    p = command("baseline", cmd_baseline, "record migrations applied by hand or by another "
                "tool as applied, without running them")  # fmt: skip
    dsn(p)
    p.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    p.add_argument("--layout", choices=list(layouts.LAYOUTS), metavar="NAME", help=layout_help)
    p.add_argument("--to", metavar="NAME", help="the last migration to record (default: all)")
    p = command("run", cmd_run, "run any migration tool, healing what it fails on, and run it "
                "again; its output and exit code pass through")  # fmt: skip
    dsn(p)
    p.add_argument("--attempts", type=int, default=5,
                   help="how many times the tool is run again after heals (default 5)")  # fmt: skip
    p.add_argument("tool", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    p = command("network", cmd_network, "the learning network: make a hub, join or leave "
                "one, and see its state")  # fmt: skip
    dsn(p)
    p.add_argument("action", choices=("hub", "join", "leave", "status"))
    p.add_argument("--hub", metavar="DSN", help="the hub's connection (join, leave)")
    p.add_argument("--member", metavar="ID",
                   help="leave, run on a hub: remove this member without its database")  # fmt: skip
    p.add_argument("--member-conninfo", metavar="CONNINFO",
                   help="how the hub's server reaches this member, as a role that is no "
                   "superuser (default: the member's connection as pgheal_replicator)")  # fmt: skip
    p.add_argument("--hub-conninfo", metavar="CONNINFO",
                   help="how this member's server reaches the hub, as a role that is no "
                   "superuser (default: --hub as pgheal_replicator)")  # fmt: skip
    p = command("status", cmd_status, "health and the last 24 hours in a few lines")
    dsn(p)
    p = command("doctor", cmd_doctor, "run every health check and say what to do about each")
    dsn(p)
    p = command("events", cmd_events, "the event stream of heal.build_events")
    dsn(p)
    p.add_argument("--since", default="1h", help="how far back: 90s, 30m, 1h, 2d (default 1h)")
    p.add_argument("--follow", action="store_true", help="then print new events as they come")
    p.add_argument("--count", type=int, help="with --follow: stop after this many new events")
    p = command("server-deps", cmd_server_deps, "install pglast for the server's PL/Python")
    p.add_argument("--target", type=Path, default=serverdeps.default_path(),
                   help="directory to install into (default: %(default)s)")  # fmt: skip
    p.add_argument("--python-version", help="the server's Python, e.g. 3.11 (default: probed)")
    p = command("demo", cmd_demo, "heal a migration in a throwaway cluster, then remove it")
    p.add_argument("--keep", action="store_true", help="leave the cluster running")
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except problems.CommandError as exc:
        problem = problems.Problem(str(exc))
    except psycopg.ProgrammingError as exc:
        if exc.diag.sqlstate is None:  # libpq refused the connection string itself
            problem = problems.Problem(f"not a connection string: {exc} (see --dsn, -h -p -U -d)")
        else:
            problem = problems.database_error(exc, *_who(args))
    except psycopg.Error as exc:
        problem = problems.database_error(exc, *_who(args))
    except KeyboardInterrupt:
        problem = problems.interrupted(args.command)
    except BrokenPipeError:
        # The reader went away (`| head`): say nothing, on a stdout that no longer fails.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return problems.BROKEN_PIPE
    except OSError as exc:
        problem = problems.os_error(exc)
    print(f"pgheal {args.command}: {problem.line()}", file=sys.stderr)
    return problem.exit_code


def _who(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The user and database the command meant to connect as, for the error's advice."""
    try:
        info = conninfo_to_dict(_dsn(args))
    except psycopg.Error:
        info = {}
    return (info.get("user") or os.environ.get("PGUSER") or getpass.getuser(),
            info.get("dbname") or os.environ.get("PGDATABASE"))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
