-- corpus: a view ranking by similarity()
CREATE TABLE people (name text);
CREATE VIEW people_like_ada AS
    SELECT name, similarity(name, 'Ada') AS score FROM people ORDER BY score DESC;
