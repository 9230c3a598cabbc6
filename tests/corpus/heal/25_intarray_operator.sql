-- corpus: tag intersection with intarray's & operator
CREATE TABLE posts (tags int[]);
CREATE VIEW common_tags AS SELECT tags & ARRAY[1, 2, 3] AS common FROM posts;
