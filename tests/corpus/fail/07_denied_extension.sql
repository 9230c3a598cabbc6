-- corpus: an extension on the deny list (it reaches the network)
-- expect: extension "dblink" is on the deny list
CREATE VIEW remote AS SELECT * FROM dblink('host=elsewhere', 'SELECT 1') AS t(x int);
