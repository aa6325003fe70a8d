CREATE TABLE flags (id bigint PRIMARY KEY, level smallint);
