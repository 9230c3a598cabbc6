"""Loading pglast the way the server does: deep-bound, its AST and enums on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pglast

SITE = str(Path(pglast.__file__).parents[1])
PLPYTHON = str(Path(__file__).parents[2] / "plpython")


def run(code: str) -> str:
    """`code` in a fresh interpreter, where no pglast was imported yet."""
    prelude = f"import sys; sys.path.insert(0, {PLPYTHON!r})\nfrom heal import parser\n"
    result = subprocess.run(
        [sys.executable, "-c", prelude + code], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_parsing_to_json_leaves_the_ast_and_enums_unloaded():
    out = run(
        f"pg = parser.load({SITE!r})\n"
        "pg.parser.parse_sql_json('CREATE TABLE t (a text)'); pg.split('SELECT 1; SELECT 2')\n"
        "print(parser.loaded() is pg, *(type(sys.modules[m]).__name__"
        " for m in ('pglast.ast', 'pglast.enums')))"
    )
    assert out == "True _LazyModule _LazyModule"


def test_the_ast_enums_and_printer_load_when_used():
    out = run(
        f"pg = parser.load({SITE!r})\n"
        "from pglast.stream import RawStream\n"
        "print(RawStream()(pg.parse_sql('select a from b where c > 1')),"
        " pg.enums.SetOperation.SETOP_NONE.name, pg.__version__)"
    )
    assert out == f"SELECT a FROM b WHERE c > 1 SETOP_NONE {pglast.__version__}"


def test_a_missing_pglast_is_reported_with_its_fix():
    out = run(
        "sys.path[:] = [p for p in sys.path if 'site-packages' not in p and 'pgheal' not in p]\n"
        "try:\n    parser.load('/nonexistent')\n"
        "except parser.ParserUnavailable as exc:\n    print(exc)"
    )
    assert "cannot import pglast" in out and "pgheal server-deps" in out
