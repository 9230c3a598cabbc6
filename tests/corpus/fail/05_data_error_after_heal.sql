-- corpus: a genuine data error after a heal: the heal is rolled back too
-- expect: division by zero
CREATE TABLE accounts (email citext);
INSERT INTO accounts VALUES ('a@b.c');
SELECT 1 / (SELECT count(*) - 1 FROM accounts);
