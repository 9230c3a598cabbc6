-- The event triggers, re-created on every install; the predictive one is then switched
-- on or off as heal.settings predictive says, so an upgrade keeps the operator's choice.

-- Only the DDL the scan learns from: recording every CREATE TABLE would cost each one
-- a write.
DROP EVENT TRIGGER IF EXISTS heal_ddl_log;
CREATE EVENT TRIGGER heal_ddl_log ON ddl_command_end
    WHEN TAG IN ('CREATE EXTENSION', 'ALTER EXTENSION', 'DROP EXTENSION', 'CREATE SCHEMA',
                 'ALTER SCHEMA', 'DROP SCHEMA', 'ALTER FUNCTION', 'ALTER PROCEDURE')
    EXECUTE FUNCTION heal.record_ddl();
COMMENT ON EVENT TRIGGER heal_ddl_log IS
    'pgheal: records DDL about extensions and schemas in heal.ddl_log';

DROP EVENT TRIGGER IF EXISTS heal_predict_ddl;
CREATE EVENT TRIGGER heal_predict_ddl ON ddl_command_start
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE VIEW',
                 'CREATE MATERIALIZED VIEW', 'CREATE INDEX', 'CREATE FUNCTION',
                 'CREATE PROCEDURE', 'CREATE AGGREGATE', 'CREATE TYPE', 'CREATE DOMAIN',
                 'CREATE SEQUENCE', 'CREATE TRIGGER', 'CREATE POLICY', 'CREATE OPERATOR',
                 'CREATE CAST', 'CREATE TEXT SEARCH DICTIONARY',
                 'CREATE TEXT SEARCH CONFIGURATION', 'ALTER TEXT SEARCH DICTIONARY',
                 'ALTER TEXT SEARCH CONFIGURATION', 'CREATE SERVER', 'GRANT', 'REVOKE',
                 'COMMENT', 'CREATE EXTENSION', 'ALTER EXTENSION', 'ALTER TABLE',
                 'ALTER DOMAIN', 'ALTER FUNCTION', 'ALTER TYPE')
    EXECUTE FUNCTION heal.predict_ddl();
COMMENT ON EVENT TRIGGER heal_predict_ddl IS
    'pgheal: heals DDL from any client before it fails (heal.settings predictive)';

UPDATE heal.settings SET value = value WHERE name = 'predictive';  -- fires heal.apply_predictive
