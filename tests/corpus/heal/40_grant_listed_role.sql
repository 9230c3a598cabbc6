-- corpus: read access for an analytics role the policy lets pgheal create
-- settings: grant_roles = analytics_reader
CREATE TABLE metrics (name text, value float8);
GRANT SELECT ON metrics TO analytics_reader;
