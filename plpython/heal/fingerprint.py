"""Fingerprints of errors: the same *kind* and the same *instance*.

``function uuid_generate_v4() does not exist`` and ``function gen_random_bytes(integer)
does not exist`` are one kind (``function %(%) does not exist``) but two instances.
An instance fingerprint does not depend on the database, so what one database
learned can seed another.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import Missing, classify
from .typenames import normalize_type

_LITERAL = re.compile(r"'(?:[^']|'')*'")
_IDENTIFIER = re.compile(r'"(?:[^"]|"")*"')
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")


@dataclass(frozen=True)
class Fingerprint:
    id: str
    pattern: str
    missing: Missing | None


def kind(message: str) -> str:
    """The message with identifiers and literals abstracted."""
    text = _LITERAL.sub("%", message)
    text = _IDENTIFIER.sub('"%"', text)
    return _NUMBER.sub("%", text)


def fingerprint(sqlstate: str | None, message: str) -> Fingerprint:
    missing = classify(sqlstate or "", message)
    if missing is not None:
        return of_missing(sqlstate, missing)
    instance = _NUMBER.sub("?", _LITERAL.sub("?", message))
    return Fingerprint(_digest(f"{sqlstate}|{instance}"), kind(message), None)


def of_missing(sqlstate: str | None, missing: Missing) -> Fingerprint:
    """The fingerprint of an error about `missing`: however the message spelled it (an
    error's text, a prediction of the trigger), one object missing is one failure."""
    key = f"{sqlstate}|{missing.kind}|{missing.describe()}"
    return Fingerprint(_digest(key), missing.pattern, missing)


def _digest(key: str) -> str:
    return hashlib.md5(key.encode()).hexdigest()


#: What a numeric type modifier looks like: ``varchar(20)``, ``numeric(10, 2)``.
_TYPMOD = re.compile(r"^[^()]*(\(\s*\d+(\s*,\s*\d+)?\s*\))?(\[\])*$")
#: An access method's or a language's name.
_PLAIN_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def canonical(missing: Missing) -> Missing:
    """`missing` without its schema, its argument types as the catalog names them
    (``integer`` -> ``int4``): how the network names it, whoever printed the error."""
    if missing.kind in ("function", "procedure", "operator"):
        args = tuple(a if a in ("", "...") else normalize_type(a) for a in missing.args)
    else:
        args = missing.args
    return Missing(missing.kind, missing.name, None, args)


def shareable(missing: Missing, catalog_types: frozenset[str]) -> Missing | None:
    """`missing` as the network may see it (:func:`canonical`), or None when it names
    something of an application's. Argument types must be `catalog_types` (the
    system's and installed extensions' type names), written plainly (no schema, no
    modifier but a number); an access method or language a plain name; the type of a
    default operator class a catalog type. Only names of that shape leave: the text
    of an error message (which any role can make up with RAISE) does not."""
    if missing.kind in ("function", "procedure", "operator"):
        for arg in missing.args:
            if arg in ("", "...", "unknown"):
                continue
            if "." in arg or '"' in arg or not _TYPMOD.match(arg):
                return None
            if normalize_type(arg).lstrip("_") not in catalog_types:
                return None
    elif any(not _PLAIN_NAME.match(a) for a in missing.args):
        return None
    if missing.kind == "default_opclass" and normalize_type(missing.name) not in catalog_types:
        return None
    return canonical(missing)
