-- pgheal core schema: settings, the server package, migrations and what happened to them.
-- Incremental: runs once per database, recorded in heal.installed_scripts.

CREATE TABLE heal.settings (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    description text NOT NULL
);
COMMENT ON TABLE heal.settings IS
    'Policy: what pgheal may create on a caller''s behalf, and how it runs. Edit with UPDATE.';

CREATE TABLE heal.installation (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version      text NOT NULL,
    python_path  text,
    installed_at timestamptz NOT NULL DEFAULT now(),
    installed_by name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE heal.installation IS
    'The deployed pgheal version and the directory holding the server''s pglast.';

CREATE TABLE heal.modules (
    name   text PRIMARY KEY,
    source text NOT NULL
);
COMMENT ON TABLE heal.modules IS
    'Sources of the server package "heal", imported by heal._load() in each backend.';

CREATE TABLE heal.migrations (
    id          bigserial PRIMARY KEY,
    checksum    text NOT NULL,
    status      text NOT NULL CHECK (status IN ('succeeded', 'failed')),
    source      text NOT NULL DEFAULT 'migration',
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    statements  integer NOT NULL DEFAULT 0,
    attempts    integer NOT NULL DEFAULT 0,
    heals       integer NOT NULL DEFAULT 0,
    duration_ms numeric,
    error       text,
    run_by      name NOT NULL
);
COMMENT ON TABLE heal.migrations IS 'One row per call of heal.migrate.';

CREATE TABLE heal.build_events (
    id           bigserial PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    event_type   text NOT NULL CHECK (event_type IN (
                     'migration_started', 'auto_heal_attempt', 'auto_heal_success',
                     'auto_heal_failed', 'migration_succeeded', 'migration_failed')),
    migration_id bigint REFERENCES heal.migrations ON DELETE CASCADE,
    statement    integer,
    sqlstate     text,
    message      text,
    fix_sql      text,
    duration_ms  numeric,
    detail       jsonb
);
CREATE INDEX build_events_type_created_idx ON heal.build_events (event_type, created_at DESC);
CREATE INDEX build_events_migration_idx ON heal.build_events (migration_id);
COMMENT ON TABLE heal.build_events IS 'Every step of every migration: starts, heal attempts, fixes, outcomes.';

CREATE TABLE heal.universal_error_patterns (
    pattern         text PRIMARY KEY,
    sqlstate        text NOT NULL,
    category        text NOT NULL,
    auto_fixable    boolean NOT NULL,
    fix_description text NOT NULL,
    source          text NOT NULL DEFAULT 'builtin',
    times_seen      bigint NOT NULL DEFAULT 0,
    times_fixed     bigint NOT NULL DEFAULT 0,
    first_seen      timestamptz,
    last_seen       timestamptz
);
COMMENT ON TABLE heal.universal_error_patterns IS
    'Kinds of error pgheal knows, with how often each was seen and healed.';

CREATE TABLE heal.extension_objects (
    extension text NOT NULL,
    kind      text NOT NULL,
    name      text NOT NULL,
    args      text[] NOT NULL DEFAULT '{}',
    min_args  integer NOT NULL DEFAULT 0,
    max_args  integer,
    UNIQUE (extension, kind, name, args)
);
CREATE INDEX extension_objects_name_idx ON heal.extension_objects (name, kind);
COMMENT ON TABLE heal.extension_objects IS
    'What each available extension creates, read from its install scripts on this server.';

CREATE TABLE heal.extension_catalog_builds (
    id          serial PRIMARY KEY,
    built_at    timestamptz NOT NULL DEFAULT now(),
    fingerprint text NOT NULL,
    extensions  integer NOT NULL,
    objects     integer NOT NULL,
    duration_ms numeric NOT NULL,
    problems    text[] NOT NULL DEFAULT '{}'
);
COMMENT ON TABLE heal.extension_catalog_builds IS
    'Each rebuild of heal.extension_objects; the newest fingerprint is the current one.';
