-- corpus: a syntax error: nothing runs
-- expect: syntax error at or near "TABEL" (statement 2, line 4, column 8)
CREATE TABLE a (x int);
CREATE TABEL b (x int);
