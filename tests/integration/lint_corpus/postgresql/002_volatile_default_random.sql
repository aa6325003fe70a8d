ALTER TABLE accounts ADD COLUMN score float8 DEFAULT random();
