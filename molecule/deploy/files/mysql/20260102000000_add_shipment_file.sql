-- migrate:up
ALTER TABLE shipment_records ADD COLUMN shipmentFile varchar(191) NULL;

-- migrate:down
ALTER TABLE shipment_records DROP COLUMN shipmentFile;
