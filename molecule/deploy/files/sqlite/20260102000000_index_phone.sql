-- migrate:up
CREATE INDEX customers_phone ON customers (phone);

-- migrate:down
DROP INDEX customers_phone;
