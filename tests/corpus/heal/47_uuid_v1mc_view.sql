-- corpus: uuid_generate_v1mc in a view
CREATE VIEW new_ids AS SELECT uuid_generate_v1mc() AS id;
