-- corpus: geo radius index: earthdistance needs cube
CREATE TABLE stores (id int, lat float8, lon float8);
CREATE INDEX stores_location_idx ON stores USING gist (ll_to_earth(lat, lon));
