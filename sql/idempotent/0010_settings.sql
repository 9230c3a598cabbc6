-- Default settings and built-in patterns. New rows are added on upgrade; values an
-- operator changed are kept. Values are checked on every change (heal.check_setting).

INSERT INTO heal.settings AS s (name, kind, value, description) VALUES
    ('extension_schema', 'identifier', 'extensions',
     'Schema extensions are installed into (created when missing, USAGE granted to PUBLIC).'),
    ('allow_extensions', 'list', '',
     'Extensions any caller may get installed, even if denied or untrusted.'),
    ('deny_extensions', 'list',
     'adminpack, amcheck, bool_plperlu, dblink, file_fdw, hstore_plperlu, hstore_plpython3u, '
     'jsonb_plperlu, jsonb_plpython3u, ltree_plpython3u, old_snapshot, pageinspect, '
     'pg_buffercache, pg_freespacemap, pg_prewarm, pg_surgery, pg_visibility, pg_walinspect, '
     'pgrowlocks, pgstattuple, plperlu, plpython2u, plpython3u, plpythonu, pltclu, '
     'postgres_fdw, sepgsql',
     'Extensions never installed automatically (files, network, server internals, untrusted '
     'languages) unless also in allow_extensions.'),
    ('create_schemas', 'boolean', 'on',
     'Whether missing schemas are created (for callers with CREATE on the database, '
     'and the roles in schema_roles).'),
    ('schema_roles', 'list', '',
     'Roles that get missing schemas created even without CREATE on the database.'),
    ('grant_roles', 'list', '',
     'Roles pgheal may create (NOLOGIN) when a GRANT or other statement names them '
     'and they do not exist. Empty: never create roles.'),
    ('persist_search_path', 'boolean', 'on',
     'Whether the extension schema is added to the database''s default search_path '
     '(ALTER DATABASE ... SET search_path) so later sessions find what was healed.'),
    ('disabled_fixes', 'list', '',
     'Kinds of fix never applied: create_schema, create_extension, search_path, '
     'persist_search_path, create_role, skip_identical_policy, retry_transient.'),
    ('max_attempts', 'integer', '5',
     'Most fixes (or transient retries) for one statement before the migration fails.'),
    ('predict', 'boolean', 'on',
     'Whether heal.migrate applies the fixes static analysis finds before running a statement.'),
    ('predictive', 'boolean', 'on',
     'Whether DDL from any client is healed before it fails (event trigger heal_predict_ddl); '
     'pgheal predictive on|off.'),
    ('lock_timeout_ms', 'integer', '60000',
     'How long a named migration waits for another runner of the same name (milliseconds).'),
    ('retry_delay_ms', 'integer', '100',
     'First wait before retrying a transient failure; doubled on each retry (milliseconds).'),
    ('min_occurrences', 'integer', '1',
     'How many times the scan must see an error before it applies a fix.'),
    ('scan_max_bytes', 'integer', '67108864',
     'Most bytes of server log one scan reads; the next scan goes on from there.'),
    ('scan_max_events', 'integer', '100000',
     'Most errors one scan records; the next scan goes on from there.'),
    ('retention_error_events_days', 'integer', '30',
     'Days heal.error_events rows are kept.'),
    ('retention_build_events_days', 'integer', '90',
     'Days heal.build_events rows of finished runs are kept.'),
    ('retention_cron_days', 'integer', '14',
     'Days pg_cron keeps the run details of pgheal''s jobs (applied when the scan is scheduled).'),
    ('scan_schedule', 'text', '*/5 * * * *',
     'pg_cron schedule of heal.scan() (GMT); set by pgheal schedule --every.'),
    ('network_patterns', 'text', 'suggest',
     'What the learning network''s patterns (heal.network_patterns) may do here, after '
     'pgheal''s own knowledge and the catalog: off, suggest (named in heal.plan and failure '
     'messages) or apply (within this policy, never beyond it).')
ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, kind = EXCLUDED.kind;

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
    ('data type % has no default operator class for access method "%"', '42704', 'auto_heal',
     true, 'install the extension that provides a default operator class (e.g. btree_gist)',
     'builtin'),
    ('access method "%" does not exist', '42704', 'auto_heal', true,
     'install the extension that provides the access method', 'builtin'),
    ('tablesample method % does not exist', '42704', 'auto_heal', true,
     'install the extension that provides the tablesample method', 'builtin'),
    ('text search template "%" does not exist', '42704', 'auto_heal', true,
     'put its schema on the search path, or install the extension that provides it', 'builtin'),
    ('text search parser "%" does not exist', '42704', 'auto_heal', true,
     'put its schema on the search path, or install the extension that provides it', 'builtin'),
    ('text search dictionary "%" does not exist', '42704', 'auto_heal', true,
     'put its schema on the search path, or install the extension that provides it', 'builtin'),
    ('text search configuration "%" does not exist', '42704', 'auto_heal', true,
     'put its schema on the search path, or install the extension that provides it', 'builtin'),
    ('role "%" does not exist', '42704', 'auto_heal', true,
     'create the role NOLOGIN, only if heal.settings grant_roles names it', 'builtin'),
    ('transform for type % language "%" does not exist', '42704', 'auto_heal', true,
     'install the extension that provides the transform (e.g. jsonb_plpython3u)', 'builtin'),
    ('required extension "%" is not installed', '42704', 'auto_heal', true,
     'install the extension required first, as CREATE EXTENSION ... CASCADE would',
     'builtin'),
    ('foreign-data wrapper "%" does not exist', '42704', 'auto_heal', true,
     'install the extension that provides the foreign-data wrapper (e.g. postgres_fdw)',
     'builtin'),
    ('relation "%" does not exist', '42P01', 'auto_heal', true,
     'install the extension that provides the table or view, or put the schema where an '
     'extension has it on the search path', 'builtin')
ON CONFLICT (pattern) DO UPDATE
    SET sqlstate = EXCLUDED.sqlstate, fix_description = EXCLUDED.fix_description;
