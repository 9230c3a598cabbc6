"""The CLI's output as a log or a pipe gets it: tables in psql's aligned format, a row
a line; lines as they are, with nothing a terminal would act on, and without rich."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.text import Text

from pgheal.monitor import console, print_table


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
