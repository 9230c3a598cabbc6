-- corpus: a modular monolith: one migration, several missing schemas
CREATE TABLE catalog.items (id int PRIMARY KEY);
CREATE TABLE inventory.stock (item_id int, quantity int);
CREATE TABLE shipping.parcels (id int, weight_g int);
