-- Monitoring from psql: what was healed, what was not and why, what pgheal knows,
-- the migration history, its own health, and a daily summary.

CREATE OR REPLACE VIEW heal.recent_heals AS
SELECT e.created_at,
       CASE WHEN e.source = 'migration' AND e.detail ->> 'way' = 'predicted' THEN 'predicted'
            ELSE e.source END AS source,
       m.name AS migration,
       e.statement,
       e.sqlstate,
       coalesce(e.detail ->> 'missing', e.message) AS failed,
       coalesce(e.detail ->> 'fixes', e.fix_sql) AS fix,
       e.fix_sql,
       e.duration_ms
  FROM heal.build_events e
  LEFT JOIN heal.migrations m ON m.id = e.migration_id
 WHERE e.event_type = 'auto_heal_success' AND m.status IS DISTINCT FROM 'dry_run'
 ORDER BY e.created_at DESC;
COMMENT ON VIEW heal.recent_heals IS
    'Heals, newest first: source is migration (reactive), predicted, event_trigger or scan.';

-- One row per time an error was not healed: the rows heal.failures groups and
-- heal.stats counts. Runs that were rolled back on purpose (dry runs) heal nothing and
-- fail nothing.
DROP VIEW IF EXISTS heal.stats;
DROP VIEW IF EXISTS heal.failures;
CREATE OR REPLACE VIEW heal.unhealed AS
SELECT coalesce(e.fingerprint, md5(concat_ws('|', e.sqlstate, e.message))) AS fingerprint,
       e.created_at AS occurred_at, e.sqlstate,
       coalesce(e.detail ->> 'missing', e.message) AS error,
       coalesce(e.reason_kind, 'no_fix') AS reason_kind,
       e.detail ->> 'reason' AS reason,
       e.source
  FROM heal.build_events e
  LEFT JOIN heal.migrations m ON m.id = e.migration_id
 WHERE e.event_type = 'auto_heal_failed'
   AND e.source <> 'scan'  -- the scan's are the log's errors, below: each counted once
   AND m.status IS DISTINCT FROM 'dry_run'
UNION ALL
SELECT f.fingerprint, x.logged_at, f.sqlstate, coalesce(f.object, f.pattern),
       coalesce(f.reason_kind, CASE WHEN f.ineffective THEN 'ineffective'
                                    WHEN f.object IS NULL THEN 'no_fix'
                                    ELSE 'waiting' END),
       coalesce(f.refused,
                CASE WHEN f.ineffective THEN 'the fix did not stop the error: marked ineffective'
                     WHEN f.object IS NULL
                     THEN 'the error names no missing dependency pgheal knows how to provide'
                     ELSE 'not seen often enough yet (heal.settings min_occurrences)' END),
       'scan'
  FROM heal.error_fingerprints f
  JOIN heal.error_events x ON x.fingerprint = f.fingerprint
 WHERE f.fixed_at IS NULL OR (f.ineffective AND x.logged_at > f.fixed_at);
COMMENT ON VIEW heal.unhealed IS
    'Each time an error was not healed (a failed heal of a migration, the DDL trigger or '
    'pgheal run; an error the scan read from the log and did not fix), with its '
    'fingerprint and reason kind: the rows of heal.failures and heal.stats.';

CREATE VIEW heal.failures AS
WITH latest AS (
    SELECT DISTINCT ON (fingerprint) fingerprint, error, sqlstate, reason_kind, reason
      FROM heal.unhealed
     ORDER BY fingerprint, occurred_at DESC
)
SELECT l.error, l.sqlstate, coalesce(k.label, l.reason_kind) AS kind, l.reason_kind,
       l.reason, n.times, n.sources, n.first_seen, n.last_seen, l.fingerprint
  FROM latest l
  JOIN (SELECT fingerprint, count(*) AS times, array_agg(DISTINCT source) AS sources,
               min(occurred_at) AS first_seen, max(occurred_at) AS last_seen
          FROM heal.unhealed GROUP BY fingerprint) n USING (fingerprint)
  LEFT JOIN heal.reason_kinds k ON k.kind = l.reason_kind
 ORDER BY n.last_seen DESC;
COMMENT ON VIEW heal.failures IS
    'Errors that were not healed, one row per error (its fingerprint, however its message '
    'was spelled), with the latest reason and its kind (heal.reason_kinds): no known fix, '
    'refused by policy (the setting is named), not available on the host (the package is '
    'named), fix ineffective, waiting.';

CREATE OR REPLACE VIEW heal.patterns AS
SELECT 'builtin' AS source, p.pattern, p.sqlstate, p.fix_description AS fix,
       p.times_seen, p.times_fixed, p.last_seen, true AS enabled
  FROM heal.universal_error_patterns p
 WHERE p.source = 'builtin'
UNION ALL
SELECT 'catalog', coalesce(f.object, f.pattern), f.sqlstate, f.fix_sql, f.times_seen,
       (f.fixed_at IS NOT NULL)::int, f.last_seen, NOT f.ineffective
  FROM heal.error_fingerprints f
 WHERE f.fix_source = 'catalog'
UNION ALL
SELECT 'learned', l.message, l.sqlstate,
       l.fix_kind || ' ' || l.fix_target || ' (confidence ' || l.confidence || ', from '
           || coalesce(l.learned_from, 'an import') || ')',
       coalesce(f.times_seen, 0), l.applied, f.last_seen, l.enabled
  FROM heal.learned_patterns l
  LEFT JOIN heal.error_fingerprints f ON f.fingerprint = l.fingerprint
UNION ALL
SELECT 'network', n.object, n.sqlstate,
       'create_extension ' || n.extension || ' (fixed on ' || n.members
           || CASE WHEN n.members = 1 THEN ' member' ELSE ' members' END || ', held '
           || n.held || ' of ' || n.applied || ' times)',
       NULL, least(n.applied, 2147483647)::integer, n.updated_at,
       (SELECT value FROM heal.settings WHERE name = 'network_patterns') <> 'off'
  FROM heal.network_patterns n
 WHERE n.kind = 'fix'  -- other databases' text: only what has the shape of names
   AND n.extension ~ '^[A-Za-z0-9_.-]{1,63}$' AND n.object ~ '^[a-z_]+ [^;]{1,200}$'
   AND n.object !~ '--|;|/\*';
COMMENT ON VIEW heal.patterns IS
    'What pgheal knows how to heal: built-in kinds, fixes found in the extension catalog, '
    'patterns learned from people, and fixes the learning network proved.';

CREATE OR REPLACE VIEW heal.migration_history AS
SELECT DISTINCT ON (m.name)
       m.name, m.status, m.checksum,
       count(*) OVER w AS attempts,
       sum(m.heals) OVER w AS heals,
       m.duration_ms, m.finished_at AS last_run, m.run_by, m.source, m.error
  FROM heal.migrations m
 WHERE m.name IS NOT NULL AND m.status <> 'dry_run'
WINDOW w AS (PARTITION BY m.name)
 ORDER BY m.name, m.id DESC;
COMMENT ON VIEW heal.migration_history IS
    'One row per named migration: its latest status, checksum, how many runs, heals, duration.';

CREATE OR REPLACE FUNCTION heal.health_checks()
RETURNS TABLE (name text, status text, detail text, remediation text)
LANGUAGE plpython3u SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
plpy.execute("SELECT heal._load()")
from heal.health import checks
return checks()
$$;

CREATE OR REPLACE VIEW heal.health AS SELECT * FROM heal.health_checks();
COMMENT ON VIEW heal.health IS
    'One row per check of pgheal''s own machinery: ok, warn or error, and what to do.';

CREATE VIEW heal.stats AS
WITH heals AS (
    SELECT e.created_at::date AS day,
           CASE WHEN e.source = 'migration' AND e.detail ->> 'way' = 'predicted' THEN 'predicted'
                ELSE e.source END AS source,
           coalesce(e.detail ->> 'pattern', e.detail ->> 'way', 'other') AS kind, e.duration_ms
      FROM heal.build_events e
      LEFT JOIN heal.migrations m ON m.id = e.migration_id
     WHERE e.event_type = 'auto_heal_success' AND m.status IS DISTINCT FROM 'dry_run'
), totals AS (
    SELECT day, count(*) AS heals,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS median_ms_to_heal
      FROM heals GROUP BY day
), by_source AS (
    SELECT day, jsonb_object_agg(source, n) AS heals_by_source
      FROM (SELECT day, source, count(*) AS n FROM heals GROUP BY 1, 2) s GROUP BY day
), by_kind AS (
    SELECT day, jsonb_object_agg(kind, n) AS heals_by_kind
      FROM (SELECT day, kind, count(*) AS n FROM heals GROUP BY 1, 2) k GROUP BY day
), failures AS (
    SELECT occurred_at::date AS day, count(*) AS failures,
           count(DISTINCT fingerprint) AS distinct_failures
      FROM heal.unhealed GROUP BY 1
)
SELECT day,
       coalesce(t.heals, 0) AS heals,
       coalesce(s.heals_by_source, '{}') AS heals_by_source,
       coalesce(k.heals_by_kind, '{}') AS heals_by_kind,
       coalesce(f.failures, 0) AS failures,
       coalesce(f.distinct_failures, 0) AS distinct_failures,
       t.median_ms_to_heal,
       coalesce(t.heals, 0) * 10 AS estimated_minutes_saved
  FROM totals t
  FULL JOIN failures f USING (day)
  LEFT JOIN by_source s USING (day)
  LEFT JOIN by_kind k USING (day)
 ORDER BY day DESC;
COMMENT ON VIEW heal.stats IS
    'Per day: heals, failures (the rows of heal.unhealed: times, and distinct errors), median time to heal, and an estimate of person-minutes saved '
    '(10 minutes per heal: reading the error, fixing it by hand, running again).';

-- pgheal events --follow listens here: a notification an event, its id the payload,
-- sent once a statement (a scan writes thousands of events in one).
CREATE OR REPLACE FUNCTION heal.notify_event() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('heal_events', a.id::text) FROM added a ORDER BY a.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER build_events_notify AFTER INSERT ON heal.build_events
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION heal.notify_event();
COMMENT ON FUNCTION heal.notify_event() IS
    'Internal: the trigger that tells pgheal events --follow of new events.';
