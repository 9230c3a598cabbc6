-- corpus: a unique violation after citext heals: case-insensitive duplicates
-- expect: duplicate key value violates unique constraint
CREATE TABLE users (email citext UNIQUE);
INSERT INTO users VALUES ('ada@example.com'), ('ADA@example.com');
