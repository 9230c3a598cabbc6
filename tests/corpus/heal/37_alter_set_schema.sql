-- corpus: archiving a table into a schema that is not there yet
CREATE TABLE old_orders (id int);
ALTER TABLE old_orders SET SCHEMA archive;
