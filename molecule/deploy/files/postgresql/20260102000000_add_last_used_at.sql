-- migrate:up
ALTER TABLE "ExternalCredential" ADD COLUMN "lastUsedAt" timestamptz;

-- migrate:down
ALTER TABLE "ExternalCredential" DROP COLUMN "lastUsedAt";
