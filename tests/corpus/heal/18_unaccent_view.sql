-- corpus: accent-insensitive search view
CREATE TABLE authors (name text);
CREATE VIEW author_search AS SELECT name, lower(unaccent(name)) AS key FROM authors;
