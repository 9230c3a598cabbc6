-- corpus: a table in a schema nobody created
CREATE TABLE app.orders (
    id serial PRIMARY KEY,
    placed_at timestamptz DEFAULT now()
);
