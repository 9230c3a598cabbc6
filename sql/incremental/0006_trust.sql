-- The trust boundary: a migration's record names its role by oid as well as by name,
-- so that a retry never runs for a role that was dropped or renamed; a failed
-- migration that can heal now waits for a session of its own role.

ALTER TABLE heal.migrations
    ADD COLUMN run_by_oid oid,
    ADD COLUMN retry_ready_at timestamptz;
COMMENT ON COLUMN heal.migrations.run_by_oid IS
    'The role that ran it (pg_roles.oid): a retry runs only in a session of that same role.';
COMMENT ON COLUMN heal.migrations.retry_ready_at IS
    'When the scan found that this failed migration can heal now; it is retried by its own '
    'role (CALL heal.retry_migration(id)), by pg_cron as that role where pg_cron lives here.';

-- Written only by heal.record_prediction_failure's replacement inside heal.heal_ddl.
DROP FUNCTION IF EXISTS heal.record_prediction_failure(text, text);
-- The catalog rebuild computes its own fingerprint: no caller chooses what it records.
DROP FUNCTION IF EXISTS heal.rebuild_extension_catalog(text);
