-- corpus: time-bounded sampling (tsm_system_time)
CREATE TABLE clicks (id bigint);
CREATE VIEW quick_clicks AS SELECT id FROM clicks TABLESAMPLE system_time(5);
