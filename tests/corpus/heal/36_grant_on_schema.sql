-- corpus: API schema grants before the schema exists
GRANT USAGE ON SCHEMA api TO PUBLIC;
CREATE VIEW api.version AS SELECT '1.0'::text AS version;
