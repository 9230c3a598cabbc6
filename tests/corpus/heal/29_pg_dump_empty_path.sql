-- corpus: pg_dump output: empty search_path, uuid-ossp already in schema extensions
-- setup: CREATE SCHEMA extensions
-- setup: CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions
\restrict Z3xKq9v
SET statement_timeout = 0;
SET lock_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
CREATE TABLE public.sessions (
    id uuid DEFAULT uuid_generate_v4() NOT NULL,
    started_at timestamp with time zone DEFAULT now()
);
ALTER TABLE ONLY public.sessions ADD CONSTRAINT sessions_pkey PRIMARY KEY (id);
\unrestrict Z3xKq9v
