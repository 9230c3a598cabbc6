-- corpus: a cast to an extension type in a view
CREATE VIEW root_path AS SELECT 'top.science'::ltree AS path;
