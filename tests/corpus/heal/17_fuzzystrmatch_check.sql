-- corpus: a CHECK constraint calling levenshtein()
CREATE TABLE aliases (
    name text, alias text,
    CHECK (levenshtein(name, alias) BETWEEN 1 AND 3)
);
