-- corpus: no double booking: an exclusion constraint needs btree_gist
CREATE TABLE reservations (
    room_id int NOT NULL,
    during tstzrange NOT NULL,
    EXCLUDE USING gist (room_id WITH =, during WITH &&)
);
