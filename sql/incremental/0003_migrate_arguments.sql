-- heal.migrate gained optional arguments (name, dry_run, force): the one-argument
-- forms are replaced, not overloaded, so that CALL heal.migrate('...') stays unambiguous.
DROP PROCEDURE IF EXISTS heal.migrate(text);
DROP PROCEDURE IF EXISTS heal.run_migration(text, jsonb);
