-- corpus: CALL a procedure that lives in a schema not on the path
-- setup: CREATE SCHEMA ops
-- setup: CREATE TABLE public.refreshed (at timestamptz)
-- setup: CREATE PROCEDURE ops.refresh_all() LANGUAGE sql AS 'INSERT INTO public.refreshed VALUES (now())'
SET search_path = public;
CALL refresh_all();
