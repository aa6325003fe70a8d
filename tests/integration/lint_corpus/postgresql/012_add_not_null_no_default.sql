ALTER TABLE users ADD COLUMN tier integer NOT NULL;
