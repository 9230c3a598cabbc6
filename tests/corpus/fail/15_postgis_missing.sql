-- corpus: PostGIS is not installed on this server
-- expect: extension postgis (OS package postgresql-
CREATE TABLE shops (id int, location geometry(Point, 4326));
