-- migrate:up transaction:false
-- ALTER TYPE ... ADD VALUE cannot run inside a transaction block before PostgreSQL 12 (and the
-- value is unusable in the transaction that added it): dbmate runs this file outside one.
ALTER TYPE "CredentialType" ADD VALUE IF NOT EXISTS 'PERSONAL_ACCESS_TOKEN';

-- migrate:down
