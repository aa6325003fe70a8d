# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite adapter (Python standard library sqlite3), composed of one mixin per capability:

connection.py  opening the file (which must exist), running one statement, the maintenance lock; quote_ident
catalog.py     reading the catalog: tables, columns; db_verify's read-only reads
ddl.py         planning column_ensure
history.py     the migration history table (migration_status / migration_resolve)
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import Adapter
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.catalog import SqliteCatalog
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.connection import SqliteConnection
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.ddl import SqliteDdl
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.history import SqliteHistory


class SqliteAdapter(SqliteConnection, SqliteCatalog, SqliteDdl, SqliteHistory, Adapter):
    engine = 'sqlite'
