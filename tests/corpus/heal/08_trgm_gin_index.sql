-- corpus: fuzzy search index, the classic missing pg_trgm
CREATE TABLE products (id int PRIMARY KEY, title text NOT NULL);
CREATE INDEX products_title_trgm_idx ON products USING gin (title gin_trgm_ops);
