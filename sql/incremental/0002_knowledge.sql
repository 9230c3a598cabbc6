-- What pgheal knows about extensions, validated settings, named migrations.

CREATE TABLE heal.available_extensions (
    name        text PRIMARY KEY,
    version     text NOT NULL,
    trusted     boolean NOT NULL,
    superuser   boolean NOT NULL,
    relocatable boolean NOT NULL,
    schema      name,
    requires    text[] NOT NULL DEFAULT '{}',
    comment     text
);
COMMENT ON TABLE heal.available_extensions IS
    'The extensions this server can install (default versions), recorded with each catalog build.';

CREATE TABLE heal.known_extensions (
    extension text NOT NULL,
    kind      text NOT NULL,
    name      text NOT NULL,
    package   text NOT NULL,
    PRIMARY KEY (kind, name, extension)
);
COMMENT ON TABLE heal.known_extensions IS
    'Objects of well-known extensions a server may lack, and the OS package that provides them '
    '({major} is the server''s major version).';

ALTER TABLE heal.settings
    ADD COLUMN kind text NOT NULL DEFAULT 'text'
        CHECK (kind IN ('boolean', 'integer', 'list', 'identifier', 'text'));

ALTER TABLE heal.migrations
    ADD COLUMN name text,
    ADD COLUMN forced boolean NOT NULL DEFAULT false,
    DROP CONSTRAINT migrations_status_check,
    ADD CONSTRAINT migrations_status_check
        CHECK (status IN ('succeeded', 'failed', 'dry_run'));
CREATE INDEX migrations_name_idx ON heal.migrations (name, id DESC) WHERE name IS NOT NULL;
