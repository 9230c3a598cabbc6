-- corpus: hstore installed in schema extensions, the migration's path is narrow
-- setup: CREATE SCHEMA extensions
-- setup: CREATE EXTENSION hstore WITH SCHEMA extensions
SET search_path = public;
CREATE TABLE settings (data hstore);
CREATE VIEW colours AS SELECT data -> 'colour' AS colour FROM settings;
