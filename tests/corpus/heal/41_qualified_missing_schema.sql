-- corpus: Supabase-style qualified call with no extensions schema yet
CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT extensions.uuid_generate_v4(),
    secret text NOT NULL DEFAULT encode(extensions.gen_random_bytes(32), 'hex')
);
