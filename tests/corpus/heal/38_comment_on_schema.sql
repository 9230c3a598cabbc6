-- corpus: documentation first: COMMENT ON SCHEMA before CREATE SCHEMA
COMMENT ON SCHEMA internal IS 'not for the API';
