ALTER TABLE users ADD COLUMN logins integer;
