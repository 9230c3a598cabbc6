-- corpus: an enum in a missing schema
CREATE TYPE billing.invoice_status AS ENUM ('draft', 'open', 'paid', 'void');
CREATE TABLE invoices (id int, status billing.invoice_status NOT NULL DEFAULT 'draft');
