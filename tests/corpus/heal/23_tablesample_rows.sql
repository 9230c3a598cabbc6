-- corpus: a sampling view with TABLESAMPLE system_rows
CREATE TABLE logs (line text);
CREATE VIEW log_sample AS SELECT line FROM logs TABLESAMPLE system_rows(100);
