-- corpus: a missing table is not a dependency pgheal creates
-- expect: relation "customers" does not exist
CREATE VIEW active_customers AS SELECT * FROM customers WHERE active;
