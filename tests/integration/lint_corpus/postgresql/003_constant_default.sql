ALTER TABLE accounts ADD COLUMN active boolean DEFAULT true;
