ALTER DOMAIN positive_int ADD CONSTRAINT positive_int_check2 CHECK (VALUE < 1000000);
