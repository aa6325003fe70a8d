REINDEX INDEX orders_created_idx;
