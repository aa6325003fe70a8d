-- migrate:up
-- (nullable by default; an explicit NULL here is read as NOT NULL by migration_lint on MySQL today - reported)
ALTER TABLE shipment_records ADD COLUMN shipmentFile varchar(191);

-- migrate:down
ALTER TABLE shipment_records DROP COLUMN shipmentFile;
