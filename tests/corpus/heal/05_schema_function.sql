-- corpus: a helper function in a missing schema
CREATE FUNCTION util.slugify(value text) RETURNS text
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT lower(regexp_replace(value, '[^a-zA-Z0-9]+', '-', 'g')) $$;
