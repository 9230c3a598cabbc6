-- corpus: books keyed by ISBN-13 (isn)
CREATE TABLE books (isbn isbn13 PRIMARY KEY, title text);
