-- corpus: an email domain over citext
CREATE DOMAIN email_address AS citext CHECK (VALUE ~ '^[^@]+@[^@]+$');
CREATE TABLE contacts (email email_address);
