-- corpus: a BEGIN ATOMIC function using pg_trgm
CREATE TABLE names (n text);
CREATE FUNCTION best_match(q text) RETURNS text LANGUAGE sql STABLE
BEGIN ATOMIC
    SELECT n FROM names ORDER BY similarity(n, q) DESC LIMIT 1;
END;
