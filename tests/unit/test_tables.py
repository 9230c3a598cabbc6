"""The CLI's output as a log or a pipe gets it: tables in psql's aligned format, a row
a line; lines as they are, with nothing a terminal would act on, and without rich."""

from __future__ import annotations

import copy
import io
import subprocess
import sys
from datetime import datetime

from rich.text import Text

from pgheal.monitor import Plain, console, print_events, print_table


def _printed(*rows: tuple[object, ...]) -> list[str]:
    out = io.StringIO()
    print_table(console(out), "migrations", ("migration", "status", "ms", "error"), list(rows),
                right=frozenset({"ms"}))  # fmt: skip
    return out.getvalue().splitlines()


def test_each_row_is_one_line_with_its_cells_whole_and_aligned() -> None:
    long = "relation app.users does not exist " * 10
    lines = _printed(("0001_users", "applied", 12, None), ("0002_posts", "failed", 3, long))
    assert lines[0] == "migrations"
    assert lines[1] == f"migration  | status  | ms | {'error':{len(long.strip())}}".rstrip()
    assert lines[2] == "-----------+---------+----+-" + "-" * len(long.strip())
    assert lines[3] == "0001_users | applied | 12 |"
    assert lines[4] == f"0002_posts | failed  |  3 | {long.strip()}"
    assert lines[5] == "(2 rows)"
    assert len(lines) == 6


def test_a_cell_is_text_not_markup_and_never_writes_control_characters() -> None:
    lines = _printed(
        ("[bold]x[/bold]", Text("failed", style="red"), 1, "ERROR:\n  two\tlines\r"),
        ("\x1b[2Jcleared", "applied", 2, "bell\x07"),
    )
    assert lines[3] == "[bold]x[/bold] | failed  |  1 | ERROR: two lines"
    assert lines[4] == "\\x1b[2Jcleared | applied |  2 | bell\\x07"
    assert not any(ch in "".join(lines) for ch in "\x1b\x07\r\t")


def test_no_rows_still_says_so() -> None:
    header = "migration | status | ms | error"
    assert _printed() == ["migrations", header, "----------+--------+----+------", "(0 rows)"]


def test_a_line_off_a_terminal_is_written_as_it_is_and_a_run_needs_no_rich() -> None:
    # In a fresh interpreter: what a `pgheal migrate` in a pipeline imports is the point.
    code = """if True:
        import io, sys
        from pgheal import cli, runner
        out = io.StringIO()
        con = runner.console(out)
        con.print("0001_users :smile: [bold]x[/bold] \\x1b[2Jgone\\x07 tab\\tend", markup=False)
        print(repr(out.getvalue()))
        print(sorted(m for m in sys.modules if m in (
            "rich", "pgheal.deploy", "pgheal.network", "pgheal.around", "pgheal.patterns")))
    """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    written, imported = done.stdout.splitlines()
    assert written == repr("0001_users :smile: [bold]x[/bold] \\x1b[2Jgone\\x07 tab\tend\n")
    assert imported == "[]"


def test_markup_and_renderables_off_a_terminal_still_go_through_rich() -> None:
    out = io.StringIO()
    con = console(out)
    assert not con.is_terminal
    con.print("[bold]all checks pass[/bold]")
    con.print(Text.assemble(("pgheal: ok", "bold green"), " in database app"))
    assert out.getvalue() == "all checks pass\npgheal: ok in database app\n"


class _Log(io.StringIO):
    """A log file that remembers how much of it was written when last flushed."""

    flushed = 0

    def flush(self) -> None:
        self.flushed = len(self.getvalue())
        super().flush()


def test_each_line_off_a_terminal_is_flushed_as_it_is_printed() -> None:
    # A migration that hangs must show in the log which one it is.
    log = _Log()
    con = console(log)
    con.print("0001_users", markup=False)
    assert (log.getvalue(), log.flushed) == ("0001_users\n", 11)
    con.print("[bold]done[/bold]")
    assert (log.getvalue(), log.flushed) == ("0001_users\ndone\n", 16)


_HOSTILE = 'relation "\x1b]0;owned\x07\x1b[2J" does not exist \u200d'
_SHOWN = 'relation "\\x1b]0;owned\\x07\\x1b[2J" does not exist \\u200d'


def _event(message: str) -> dict:
    return {"id": 1, "created_at": datetime(2026, 1, 2, 3, 4, 5), "source": "scan",
            "event_type": "auto_heal_failed", "statement": None, "sqlstate": "42P01",
            "message": message, "fix_sql": None}  # fmt: skip


def test_data_never_writes_a_terminal_s_control_characters_in_a_log() -> None:
    # An error message any role can put in the server's log reaches the events.
    out = io.StringIO()
    print_events([_event(_HOSTILE)], out, as_json=False, table=False)
    assert _SHOWN in out.getvalue()
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()


def test_data_never_writes_a_terminal_s_control_characters_on_a_terminal(monkeypatch) -> None:
    # FORCE_COLOR makes rich draw as on a terminal: styles are escape sequences of its
    # own, the data's are shown as codes.
    monkeypatch.setenv("FORCE_COLOR", "1")
    for draw in (
        lambda out: print_events([_event(_HOSTILE)], out, as_json=False, table=False),
        lambda out: print_table(console(out), "events", ("message",), [(_HOSTILE,)]),
        lambda out: console(out).print(_HOSTILE, markup=False),
    ):
        out = io.StringIO()
        draw(out)
        written = out.getvalue()
        assert console(out).is_terminal
        assert "\x1b]0;" not in written and "\x1b[2J" not in written and "\x07" not in written
        assert "\\x1b]0;owned" in written


def test_a_plain_console_copies_without_making_rich() -> None:
    plain = Plain(io.StringIO())
    assert copy.copy(plain).file is plain.file
    assert plain._rich is None
