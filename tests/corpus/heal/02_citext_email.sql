-- corpus: case-insensitive emails, hand-written
CREATE TABLE accounts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      citext NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_email_key UNIQUE (email)
);
INSERT INTO accounts (email) VALUES ('Ada@Example.com');
