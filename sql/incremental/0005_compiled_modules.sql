-- Compiled code of the server package, made by the server's own Python at install
-- (heal.compile_modules), so that a new backend does not compile it again.
ALTER TABLE heal.modules
    ADD COLUMN code bytea,
    ADD COLUMN code_tag text;
