# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL 8 and MariaDB 10.5+ adapter (PyMySQL), composed of one mixin per capability:

connection.py  connecting, the watchdog, running one statement, the maintenance lock;
               FLAVOURS (what differs between MySQL and MariaDB) and quote_ident
blockers.py    lock blockers: who holds what a waiting statement waits for (metadata_locks, INNODB_TRX)
catalog.py     reading the catalog: tables, columns, ENUM definitions; db_verify's read-only reads
ddl.py         planning enum_add and column_ensure (and the probe behind the plans)
history.py     the migration history table (migration_status / migration_resolve)
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import Adapter
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.blockers import MysqlBlockers
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.catalog import MysqlCatalog
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import MysqlConnection
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.ddl import MysqlDdl
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.history import MysqlHistory


class MysqlAdapter(MysqlConnection, MysqlBlockers, MysqlCatalog, MysqlDdl, MysqlHistory, Adapter):
    engine = 'mysql'
