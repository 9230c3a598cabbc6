-- corpus: wrong argument types for a function that exists
-- expect: function replace(integer, integer, integer) does not exist
CREATE VIEW v AS SELECT replace(1, 2, 3) AS r;
