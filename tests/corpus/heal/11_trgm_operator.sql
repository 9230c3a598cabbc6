-- corpus: the pg_trgm % operator in a view
CREATE TABLE cities (name text);
CREATE VIEW cities_like_paris AS SELECT name FROM cities WHERE name % 'Paris';
