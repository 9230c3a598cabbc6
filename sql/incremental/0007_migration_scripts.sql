-- A migration's script is kept in parts of at most a million characters: written a
-- part at a time, a script of hundreds of MB needs no more than a part's worth of
-- memory in the backend (writing a 10 MB script as one value took 70 MB).

CREATE TABLE heal.migration_scripts (
    migration_id bigint NOT NULL REFERENCES heal.migrations ON DELETE CASCADE,
    part         integer NOT NULL CHECK (part > 0),
    sql          text NOT NULL,
    PRIMARY KEY (migration_id, part)
);
COMMENT ON TABLE heal.migration_scripts IS
    'The script of each recorded run, in parts: string_agg(sql, '''' ORDER BY part) is all of it.';

INSERT INTO heal.migration_scripts (migration_id, part, sql)
SELECT id, 1, sql FROM heal.migrations WHERE sql IS NOT NULL AND sql <> '';

ALTER TABLE heal.migrations DROP COLUMN sql;
