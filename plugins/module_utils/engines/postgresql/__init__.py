# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL adapter (psycopg 3), composed of one mixin per capability:

connection.py  connecting, the watchdog, running one statement, lock blockers, the maintenance lock
catalog.py     reading the catalog: schemas, tables, columns, enum types; db_verify's read-only reads
ddl.py         planning enum_add and column_ensure (and the probes behind the plans)
history.py     the migration history table (migration_status / migration_resolve)
locks.py       which lock a statement asks for, and who holds a conflicting one (blockers after a lock timeout)
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import Adapter
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql.catalog import PostgresCatalog
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql.connection import PostgresConnection
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql.ddl import PostgresDdl
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql.history import PostgresHistory


class PostgresAdapter(PostgresConnection, PostgresCatalog, PostgresDdl, PostgresHistory, Adapter):
    engine = 'postgresql'
