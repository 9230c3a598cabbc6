-- corpus: a role without CREATE on the database cannot get a schema
-- role: guest
-- expect: has no CREATE privilege on this database
CREATE TABLE private.notes (body text);
