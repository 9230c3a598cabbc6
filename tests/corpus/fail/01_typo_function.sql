-- corpus: a typo in a function name: nothing provides it
-- expect: function uuid_generate_v44() does not exist
CREATE TABLE t (id uuid DEFAULT uuid_generate_v44());
