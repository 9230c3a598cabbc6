-- corpus: a bloom index over many columns
CREATE TABLE events (a int, b int, c int, d int);
CREATE INDEX events_bloom ON events USING bloom (a, b, c, d) WITH (length = 80);
