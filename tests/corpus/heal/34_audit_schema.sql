-- corpus: hand-written audit log: a schema, hstore rows, a trigger function
CREATE TABLE audit.log (
    id bigserial PRIMARY KEY,
    table_name text NOT NULL,
    row_data hstore,
    changed_fields hstore,
    action_tstamp timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION audit.if_modified() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit.log (table_name, row_data) VALUES (TG_TABLE_NAME, hstore(OLD.*));
    RETURN NULL;
END $$;
