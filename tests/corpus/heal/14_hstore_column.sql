-- corpus: key/value attributes in hstore
CREATE TABLE listings (id int, attributes hstore NOT NULL DEFAULT '');
CREATE INDEX listings_attributes_idx ON listings USING gin (attributes);
