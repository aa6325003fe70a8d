-- migrate:up
ALTER TABLE customers ADD COLUMN phone TEXT;

-- migrate:down
ALTER TABLE customers DROP COLUMN phone;
