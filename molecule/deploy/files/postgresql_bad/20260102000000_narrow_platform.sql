-- migrate:up
-- The seeded platforms (GITHUB, GITLAB) are 6 characters: fails on the rows, which only a copy with the data shows.
ALTER TABLE "ExternalCredential" ALTER COLUMN platform TYPE varchar(5);

-- migrate:down
ALTER TABLE "ExternalCredential" ALTER COLUMN platform TYPE text;
