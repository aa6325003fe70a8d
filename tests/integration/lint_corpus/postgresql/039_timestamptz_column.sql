CREATE TABLE visits2 (id bigint PRIMARY KEY, seen_at timestamptz);
