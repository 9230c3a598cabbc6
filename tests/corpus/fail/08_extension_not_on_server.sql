-- corpus: pgvector is not installed on this server
-- expect: extension vector (OS package postgresql-
CREATE TABLE items (id int, embedding vector(3));
