"""Learning what extensions provide from their install scripts."""

from __future__ import annotations

import pglast

from heal.extcatalog import ProvidedObject, install_chain, objects_in, prepare

FILES = ["x--1.0.sql", "x--1.0--1.1.sql", "x--1.1--1.2.sql", "x--1.2.sql", "y--2.0.sql",
         "x.control", "x--0.9--1.0.sql", "xy--1.0.sql"]  # fmt: skip


def test_install_chain_prefers_a_direct_script():
    assert install_chain("x", "1.2", FILES) == ["x--1.2.sql"]


def test_install_chain_follows_updates():
    assert install_chain("x", "1.1", FILES) == ["x--1.0.sql", "x--1.0--1.1.sql"]
    assert install_chain("x", "3.0", FILES) == []


def test_objects_in_a_script():
    script = prepare(
        """\\echo Use "CREATE EXTENSION x" to load this file. \\quit
        CREATE FUNCTION @extschema@.f(a int, b text DEFAULT '', VARIADIC c int[] DEFAULT '{}')
            RETURNS int AS 'MODULE_PATHNAME' LANGUAGE C;
        CREATE FUNCTION g(OUT a int) AS 'MODULE_PATHNAME' LANGUAGE C;
        CREATE TYPE t;
        CREATE TYPE mood AS ENUM ('a');
        CREATE DOMAIN d AS text;
        CREATE OPERATOR % (LEFTARG = text, RIGHTARG = text, PROCEDURE = f);
        CREATE OPERATOR CLASS t_ops FOR TYPE t USING gist AS STORAGE t;
        CREATE ACCESS METHOD am TYPE INDEX HANDLER h;
        CREATE AGGREGATE agg(int) (SFUNC = f, STYPE = int);
        CREATE PROCEDURE p() LANGUAGE sql AS 'select 1';"""
    )
    objects = list(objects_in(script, pglast))
    assert objects == [
        ProvidedObject("function", "f", ("int4", "text", "int4[]"), 1, None),
        ProvidedObject("function", "g", (), 0, 0),
        ProvidedObject("type", "t"),
        ProvidedObject("type", "mood"),
        ProvidedObject("type", "d"),
        ProvidedObject("operator", "%", ("text", "text")),
        ProvidedObject("opclass", "t_ops", ("gist", "t")),
        ProvidedObject("access_method", "am"),
        ProvidedObject("function", "agg", ("int4",), 1, 1),
        ProvidedObject("procedure", "p", (), 0, 0),
    ]
