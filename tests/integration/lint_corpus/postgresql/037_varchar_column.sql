CREATE TABLE tags (id bigint PRIMARY KEY, label varchar(40));
