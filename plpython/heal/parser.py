"""The one place that imports pglast, safely inside a PostgreSQL backend.

pglast bundles libpg_query, whose symbols (``palloc``, ``raw_parser``, ...) are the
server's own. Loaded plainly inside a backend they bind to the server's functions
and the first parse crashes it. Loading the C module with ``RTLD_DEEPBIND`` keeps
its symbols to itself. That only works if this is the first pglast import of the
process, so a pglast loaded any other way inside a backend is refused.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

#: Set on the pglast module once imported here; survives a reload of pgheal's own modules.
_MARK = "_pgheal_deepbind"


class ParserUnavailable(RuntimeError):
    """pglast cannot be used safely in this process."""


def _in_backend() -> bool:
    return "plpy" in sys.modules


def loaded() -> ModuleType | None:
    """The pglast this module imported, if it did already."""
    module = sys.modules.get("pglast")
    return module if module is not None and getattr(module, _MARK, False) else None


def load(site: str | None = None) -> ModuleType:
    """Return the ``pglast`` module, importing it with ``RTLD_DEEPBIND`` the first time.

    `site` is a directory put first on ``sys.path`` (the server's private copy).
    """
    loaded = sys.modules.get("pglast")
    if loaded is not None and getattr(loaded, _MARK, False):
        return loaded
    if site and site not in sys.path:
        sys.path.insert(0, site)
    if "pglast" in sys.modules or "pglast.parser" in sys.modules:
        if _in_backend():
            raise ParserUnavailable(
                "pglast was already imported in this backend by something other than pgheal; "
                "parsing with it would crash the server. Remove the other import (for example "
                "Debian's python3-pglast from PL/Python's path) or reconnect."
            )
        return sys.modules["pglast"]
    # A directory that was unreadable or empty at an earlier try may have it now.
    importlib.invalidate_caches()
    old = sys.getdlopenflags()
    sys.setdlopenflags(os.RTLD_NOW | os.RTLD_LOCAL | os.RTLD_DEEPBIND)
    try:
        pglast = _import_package()
        importlib.import_module("pglast.parser")
    except ImportError as exc:
        for name in [m for m in sys.modules if m == "pglast" or m.startswith("pglast.")]:
            del sys.modules[name]
        raise ParserUnavailable(
            f"cannot import pglast (site directory {site!r}): {exc}. "
            "Install it for the server's Python with `pgheal server-deps`."
        ) from exc
    finally:
        sys.setdlopenflags(old)
    setattr(pglast, _MARK, True)
    return pglast


#: Submodules of pglast that parsing to JSON never uses, and that take most of its
#: import time (hundreds of classes): loaded on first use.
_DEFERRED = ("ast", "enums")


def _import_package() -> ModuleType:
    """``import pglast``, with :data:`_DEFERRED` loaded on first use.

    The DDL trigger pays pglast's import on a connection's first DDL; this makes that
    a third of it. The package's own ``from . import ...`` finds the deferred modules
    already in place.
    """
    spec = importlib.machinery.PathFinder.find_spec("pglast")
    if spec is None or spec.loader is None or not spec.submodule_search_locations:
        raise ImportError("No module named 'pglast'")
    package = importlib.util.module_from_spec(spec)
    for name in _DEFERRED:
        sub = importlib.machinery.PathFinder.find_spec(
            f"pglast.{name}", list(spec.submodule_search_locations)
        )
        if sub is None or sub.loader is None:
            raise ImportError(f"No module named 'pglast.{name}'")
        sub.loader = importlib.util.LazyLoader(sub.loader)
        module = importlib.util.module_from_spec(sub)
        sub.loader.exec_module(module)
        sys.modules[sub.name] = module
        setattr(package, name, module)
    sys.modules["pglast"] = package
    spec.loader.exec_module(package)
    return package
