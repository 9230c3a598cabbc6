-- corpus: content hashes with digest()
CREATE TABLE documents (
    body text NOT NULL,
    sha256 text GENERATED ALWAYS AS (encode(digest(body, 'sha256'), 'hex')) STORED
);
