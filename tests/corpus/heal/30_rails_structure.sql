-- corpus: Rails structure.sql from an older PostgreSQL: public.gen_random_uuid() came from pgcrypto
SET client_min_messages = warning;
SET row_security = off;
CREATE TABLE public.users (
    id uuid DEFAULT public.gen_random_uuid() NOT NULL,
    email character varying DEFAULT ''::character varying NOT NULL,
    created_at timestamp(6) without time zone NOT NULL
);
ALTER TABLE ONLY public.users ADD CONSTRAINT users_pkey PRIMARY KEY (id);
CREATE TABLE public.schema_migrations (version character varying NOT NULL PRIMARY KEY);
INSERT INTO "schema_migrations" (version) VALUES ('20240101000000');
