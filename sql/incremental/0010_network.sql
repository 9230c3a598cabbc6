-- The learning network: what this database shares (heal.shared_patterns, kept by the
-- scan), what the fleet knows (heal.network_patterns, merged by a hub and replicated to
-- every member), and who this database is in it. Rows carry error kinds and catalog
-- names only: nothing of an application's statements, tables, roles or values.

CREATE TABLE heal.network_member (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    member_id uuid NOT NULL DEFAULT gen_random_uuid(),
    is_hub    boolean NOT NULL DEFAULT false,
    hub_since timestamptz,
    joined_at timestamptz,
    hub_id    uuid,
    shared_signature text,
    shared_rows bigint
);
INSERT INTO heal.network_member DEFAULT VALUES;
COMMENT ON TABLE heal.network_member IS
    'This database in the learning network: its random member id (the only name its rows '
    'carry), whether it is a hub, when it joined which one, and what its shared rows were '
    'made from (so an idle scan rewrites nothing).';

CREATE TABLE heal.shared_patterns (
    member_id   uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('fix', 'provides')),
    object_kind text NOT NULL,
    object      text NOT NULL,
    extension   text NOT NULL,
    sqlstate    text,
    pattern     text,
    os_package  text,
    applied     bigint NOT NULL DEFAULT 0 CHECK (applied >= 0),
    held        bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, kind, object_kind, object, extension)
);
-- A hub merges one pattern across members.
CREATE INDEX shared_patterns_pattern_idx
    ON heal.shared_patterns (kind, object_kind, object, extension);
COMMENT ON TABLE heal.shared_patterns IS
    'What this database shares with the network, kept by heal.scan(): fixes it proved '
    '(kind fix: an error about an extension''s object, the extension that fixed it, how '
    'often it was applied and held) and what its installed extensions provide (kind '
    'provides). On a hub, also every member''s rows.';

CREATE TABLE heal.network_patterns (
    kind        text NOT NULL CHECK (kind IN ('fix', 'provides')),
    object_kind text NOT NULL,
    object      text NOT NULL,
    extension   text NOT NULL,
    sqlstate    text,
    pattern     text,
    os_package  text,
    members     integer NOT NULL,
    applied     bigint NOT NULL,
    held        bigint NOT NULL,
    confidence  real NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (kind, object_kind, object, extension)
);
CREATE INDEX network_patterns_object_idx ON heal.network_patterns (object_kind, object);
COMMENT ON TABLE heal.network_patterns IS
    'What the network knows: one row per pattern with fleet-wide counts, merged by the hub '
    'from its members'' heal.shared_patterns and replicated to every member.';

-- On a hub: the members it subscribes to. Rows of other member ids are not merged.
CREATE TABLE heal.network_members (
    member_id    uuid PRIMARY KEY,
    subscription name NOT NULL UNIQUE,
    joined_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE heal.network_members IS
    'On a hub: the members that joined it (pgheal network join), one subscription each.';

ALTER TABLE heal.learned_patterns
    ADD COLUMN ineffective integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN heal.learned_patterns.ineffective IS
    'How often the error came back after this fix: it did not hold.';

ALTER TABLE heal.error_fingerprints
    DROP CONSTRAINT IF EXISTS error_fingerprints_fix_source_check,
    ADD CONSTRAINT error_fingerprints_fix_source_check
        CHECK (fix_source IN ('catalog', 'learned', 'person', 'network'));
