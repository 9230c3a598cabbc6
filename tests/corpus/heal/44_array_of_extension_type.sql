-- corpus: an array of an extension type
CREATE TABLE variants (options hstore[]);
