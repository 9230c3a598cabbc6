-- corpus: a GiST trigram index
CREATE TABLE places (id int, name text);
CREATE INDEX places_name_trgm ON places USING gist (name gist_trgm_ops);
