-- pgheal run: heals of errors another migration tool hit are recorded with source run.

ALTER TABLE heal.build_events
    DROP CONSTRAINT IF EXISTS build_events_source_check,
    ADD CONSTRAINT build_events_source_check
        CHECK (source IN ('migration', 'scan', 'event_trigger', 'run'));
