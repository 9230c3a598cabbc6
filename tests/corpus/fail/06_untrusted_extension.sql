-- corpus: a non-superuser asks for an untrusted extension
-- role: app
-- expect: extension "pg_stat_statements" is not trusted
CREATE VIEW slow_queries AS SELECT query FROM pg_stat_statements(true);
