-- Default settings and built-in patterns. New rows are added on upgrade; values an
-- operator changed are kept.

INSERT INTO heal.settings (name, value, description) VALUES
    ('extension_schema', 'extensions',
     'Schema extensions are installed into (created when missing, USAGE granted to PUBLIC).'),
    ('allow_extensions', '',
     'Comma-separated extensions any caller may get installed, even if denied or untrusted.'),
    ('deny_extensions',
     'adminpack, amcheck, bool_plperlu, dblink, file_fdw, hstore_plperlu, hstore_plpython3u, '
     'jsonb_plperlu, jsonb_plpython3u, ltree_plpython3u, old_snapshot, pageinspect, '
     'pg_buffercache, pg_freespacemap, pg_prewarm, pg_surgery, pg_visibility, pg_walinspect, '
     'pgrowlocks, pgstattuple, plperlu, plpython2u, plpython3u, plpythonu, pltclu, '
     'postgres_fdw, sepgsql',
     'Comma-separated extensions never installed automatically (files, network, server '
     'internals, untrusted languages) unless also in allow_extensions.'),
    ('create_schemas', 'on',
     'Whether missing schemas are created (for callers with CREATE on the database).'),
    ('persist_search_path', 'on',
     'Whether the extension schema is added to the database''s default search_path '
     '(ALTER DATABASE ... SET search_path) so later sessions find what was healed.'),
    ('max_attempts', '5',
     'Most fixes tried for one statement before the migration fails.')
ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description;

INSERT INTO heal.universal_error_patterns
       (pattern, sqlstate, category, auto_fixable, fix_description, source)
VALUES
    ('schema "%" does not exist', '3F000', 'auto_heal', true,
     'create the schema', 'builtin'),
    ('function %(%) does not exist', '42883', 'auto_heal', true,
     'put the schema that has the function on the search path, '
     'or install the extension that provides it', 'builtin'),
    ('procedure %(%) does not exist', '42883', 'auto_heal', true,
     'put the schema that has the procedure on the search path, '
     'or install the extension that provides it', 'builtin'),
    ('operator does not exist: % % %', '42883', 'auto_heal', true,
     'put the schema that has the operator on the search path, '
     'or install the extension that provides it', 'builtin'),
    ('type "%" does not exist', '42704', 'auto_heal', true,
     'put the schema that has the type on the search path, '
     'or install the extension that provides it', 'builtin'),
    ('operator class "%" does not exist for access method "%"', '42704', 'auto_heal', true,
     'put the schema that has the operator class on the search path, '
     'or install the extension that provides it', 'builtin'),
    ('access method "%" does not exist', '42704', 'auto_heal', true,
     'install the extension that provides the access method', 'builtin')
ON CONFLICT (pattern) DO UPDATE
    SET sqlstate = EXCLUDED.sqlstate, fix_description = EXCLUDED.fix_description;
