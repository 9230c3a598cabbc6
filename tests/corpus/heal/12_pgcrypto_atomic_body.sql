-- corpus: a SQL-standard function body calling pgcrypto
CREATE TABLE users (id int, password_hash text);
CREATE FUNCTION hash_password(pw text) RETURNS text
    LANGUAGE sql
    BEGIN ATOMIC
        SELECT crypt(pw, gen_salt('bf', 8));
    END;
