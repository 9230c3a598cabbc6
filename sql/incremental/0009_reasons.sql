-- Reasons as data, and one failure per error however it was spelled: every failure
-- carries the kind of its reason (heal.reason_kinds, written by the installer from the
-- server package's heal.reasons) and the fingerprint of its error.

CREATE TABLE heal.reason_kinds (
    kind        text PRIMARY KEY,
    label       text NOT NULL,
    description text NOT NULL,
    position    integer NOT NULL
);
COMMENT ON TABLE heal.reason_kinds IS
    'Why a heal did not happen, one row per kind: the reason_kind of heal.build_events and '
    'heal.error_fingerprints.';

ALTER TABLE heal.build_events
    ADD COLUMN fingerprint text,
    ADD COLUMN reason_kind text;
CREATE INDEX build_events_fingerprint_idx ON heal.build_events (fingerprint)
    WHERE event_type = 'auto_heal_failed';
COMMENT ON COLUMN heal.build_events.fingerprint IS
    'The error''s instance (heal.error_fingerprints.fingerprint): one object missing is one '
    'failure, whatever the message said.';
COMMENT ON COLUMN heal.build_events.reason_kind IS
    'For auto_heal_failed: why (heal.reason_kinds).';

-- The scan's open errors say why they wait, as a kind too; a fix somebody made by hand
-- is theirs (fix_source person), not a heal of pgheal's.
ALTER TABLE heal.error_fingerprints
    ADD COLUMN reason_kind text,
    DROP CONSTRAINT IF EXISTS error_fingerprints_fix_source_check,
    ADD CONSTRAINT error_fingerprints_fix_source_check
        CHECK (fix_source IN ('catalog', 'learned', 'person'));

-- Rows written before kinds existed: their kind, read once from their text.
UPDATE heal.build_events SET
       reason_kind = CASE
           WHEN detail ->> 'reason' LIKE '%ineffective%' THEN 'ineffective'
           WHEN detail ->> 'reason' LIKE '%which this server does not have%'
                OR detail ->> 'reason' LIKE '%is not available on this server%' THEN 'unavailable'
           WHEN detail ->> 'reason' LIKE 'the error survived%' OR detail ->> 'reason' LIKE 'gave up%'
                OR detail ->> 'reason' LIKE 'still %' THEN 'not_helped'
           WHEN detail ->> 'reason' LIKE '%heal.settings%' OR detail ->> 'reason' LIKE '%pgheal policy%'
                OR detail ->> 'reason' LIKE '%privilege%' THEN 'refused'
           ELSE 'no_fix' END,
       fingerprint = detail ->> 'fingerprint'
 WHERE event_type = 'auto_heal_failed';
UPDATE heal.error_fingerprints SET
       reason_kind = CASE WHEN ineffective THEN 'ineffective'
                          WHEN refused IS NULL THEN 'waiting'
                          WHEN refused LIKE '%which this server does not have%' THEN 'unavailable'
                          WHEN refused LIKE '%heal.settings%' OR refused LIKE '%pgheal policy%'
                               OR refused LIKE '%privilege%' THEN 'refused'
                          ELSE 'no_fix' END
 WHERE fixed_at IS NULL OR ineffective;
