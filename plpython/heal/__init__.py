"""pgheal's server package: the logic that runs inside PostgreSQL through PL/Python.

Everything here except :mod:`heal.server` is pure Python with no ``plpy``, so it is
unit tested without a server. The installer stores these modules' sources in
``heal.modules``; ``heal._load()`` imports them from there in each backend.
"""

__version__ = "0.1.0"

#: The pglast release the server must load; the client side pins the same one.
PGLAST_VERSION = "8.8"
