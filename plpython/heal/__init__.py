"""pgheal's server package: the logic that runs inside PostgreSQL through PL/Python.

The decision logic (script, errors, analyze, planner, policy, searchpath, extcatalog, logs,
fingerprint, typenames) is pure Python with no ``plpy``, unit tested without a
server; db, catalog, fixes, records, migrate, scanner, trigger and health are the layer that
talks to PostgreSQL. The installer stores these modules' sources in
``heal.modules``; ``heal._load()`` imports them from there in each backend.
"""

__version__ = "0.1.0"

#: The pglast release the server must load; the client side pins the same one.
PGLAST_VERSION = "8.8"
