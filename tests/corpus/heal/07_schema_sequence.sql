-- corpus: a sequence in a missing schema
CREATE SEQUENCE ids.order_number_seq START 1000;
CREATE TABLE order_numbers (n bigint DEFAULT nextval('ids.order_number_seq'));
