-- corpus: multi-dimensional points with cube
CREATE TABLE embeddings (id int, point cube);
