CREATE TABLE gadgets (id serial PRIMARY KEY, name text);
