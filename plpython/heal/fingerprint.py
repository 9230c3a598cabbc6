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


def shareable(missing: Missing, catalog_types: frozenset[str]) -> Missing | None:
    """`missing` as the network may see it, or None when it names something of an
    application's: the schema qualifier goes, and every argument type must be one of
    `catalog_types` (the system's and installed extensions' type names)."""
    for arg in missing.args:
        if arg in ("", "...", "unknown"):
            continue
        base = normalize_type(arg).lstrip("_")
        if base not in catalog_types:
            return None
    return Missing(missing.kind, missing.name, None, missing.args)
