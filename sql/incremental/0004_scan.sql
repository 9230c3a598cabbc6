-- The autonomous scan: errors read from the server log, their fingerprints, what
-- people did about them (DDL), what pgheal learned, and one row per scan.

ALTER TABLE heal.build_events
    ADD COLUMN source text NOT NULL DEFAULT 'migration'
        CHECK (source IN ('migration', 'scan', 'event_trigger'));

ALTER TABLE heal.migrations
    ADD COLUMN sql text,
    ADD COLUMN sqlstate text,
    ADD COLUMN retry_of bigint REFERENCES heal.migrations ON DELETE SET NULL;

ALTER TABLE heal.universal_error_patterns
    ADD COLUMN objects text[] NOT NULL DEFAULT '{}',
    DROP CONSTRAINT IF EXISTS universal_error_patterns_source_check,
    ADD CONSTRAINT universal_error_patterns_source_check
        CHECK (source IN ('builtin', 'catalog', 'learned', 'observed'));

CREATE TABLE heal.error_events (
    id               bigserial PRIMARY KEY,
    logged_at        timestamptz NOT NULL,
    database         text,
    user_name        text,
    application_name text,
    session_start    timestamptz,
    sqlstate         text,
    message          text NOT NULL,
    detail           text,
    statement        text,
    fingerprint      text NOT NULL,
    log_file         text NOT NULL,
    log_offset       bigint NOT NULL
);
CREATE INDEX error_events_fingerprint_idx ON heal.error_events (fingerprint, logged_at DESC);
CREATE INDEX error_events_logged_idx ON heal.error_events (logged_at);
COMMENT ON TABLE heal.error_events IS
    'ERRORs of this database read from the server log by heal.scan().';

CREATE TABLE heal.error_fingerprints (
    fingerprint    text PRIMARY KEY,
    pattern        text NOT NULL,
    sqlstate       text,
    message        text NOT NULL,
    object         text,
    times_seen     bigint NOT NULL DEFAULT 0,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    fixed_at       timestamptz,
    fix_sql        text,
    fix_source     text CHECK (fix_source IN ('catalog', 'learned')),
    seen_after_fix bigint NOT NULL DEFAULT 0,
    ineffective    boolean NOT NULL DEFAULT false,
    refused        text
);
COMMENT ON TABLE heal.error_fingerprints IS
    'One row per error instance (kind plus the objects it names), with what the scan did.';

CREATE TABLE heal.learned_patterns (
    id          serial PRIMARY KEY,
    fingerprint text NOT NULL,
    pattern     text NOT NULL,
    sqlstate    text,
    message     text NOT NULL,
    fix_kind    text NOT NULL CHECK (fix_kind IN ('create_extension', 'create_schema',
                                                  'persist_search_path')),
    fix_target  text NOT NULL,
    confidence  integer NOT NULL DEFAULT 1,
    learned_at  timestamptz NOT NULL DEFAULT now(),
    learned_from text,
    applied     integer NOT NULL DEFAULT 0,
    enabled     boolean NOT NULL DEFAULT true,
    UNIQUE (fingerprint, fix_kind, fix_target)
);
COMMENT ON TABLE heal.learned_patterns IS
    'Fixes learned from what people did after an error; applied by the scan and heal.migrate.';

CREATE TABLE heal.ddl_log (
    id          bigserial PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    role_name   name NOT NULL DEFAULT session_user,
    command_tag text NOT NULL,
    object_type text,
    object_identity text,
    by_pgheal   boolean NOT NULL DEFAULT false
);
CREATE INDEX ddl_log_created_idx ON heal.ddl_log (created_at);
COMMENT ON TABLE heal.ddl_log IS 'DDL run in this database, and by whom (heal.record_ddl).';

CREATE TABLE heal.log_intake (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    log_file    text,
    log_offset  bigint NOT NULL DEFAULT 0,
    file_mtime  double precision,
    file_inode  bigint,
    ddl_seen    bigint NOT NULL DEFAULT 0,
    search_path text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE heal.log_intake IS
    'Where heal.scan() stopped reading the server log, and the database search_path it last saw.';

CREATE TABLE heal.scans (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    duration_ms numeric NOT NULL,
    status      text NOT NULL CHECK (status IN ('ok', 'skipped', 'failed')),
    bytes_read  bigint NOT NULL DEFAULT 0,
    lines_read  bigint NOT NULL DEFAULT 0,
    events      integer NOT NULL DEFAULT 0,
    fixes       integer NOT NULL DEFAULT 0,
    retried     integer NOT NULL DEFAULT 0,
    learned     integer NOT NULL DEFAULT 0,
    purged      integer NOT NULL DEFAULT 0,
    note        text
);
COMMENT ON TABLE heal.scans IS 'One row per heal.scan() run.';
