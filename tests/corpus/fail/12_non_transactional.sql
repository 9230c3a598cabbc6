-- corpus: VACUUM cannot run inside heal.migrate
-- expect: VACUUM cannot run inside heal.migrate (statement 2, line 4)
CREATE TABLE a (x citext);
VACUUM a;
