-- corpus: a category tree with ltree
CREATE TABLE categories (id int, path ltree NOT NULL);
CREATE INDEX categories_path_idx ON categories USING gist (path);
