-- corpus: pgcrypto installed in schema extensions, a narrow search_path
-- setup: CREATE SCHEMA extensions
-- setup: CREATE EXTENSION pgcrypto WITH SCHEMA extensions
SET search_path = public;
CREATE TABLE tokens (value text DEFAULT encode(gen_random_bytes(16), 'hex'));
