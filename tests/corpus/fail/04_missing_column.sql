-- corpus: a missing column
-- expect: column "emial" does not exist
CREATE TABLE people (email text);
CREATE INDEX people_email_idx ON people (emial);
