# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Online DDL: the safe way to build each change that would otherwise lock a live table.

Engine-specific online-DDL code lives here as functions that take the engine adapter
(plugins/module_utils/engines/<engine>.py) as their first argument, so the adapters stay
the one place for connecting, quoting and the lock-retry loop, and this package the one
place for CREATE INDEX CONCURRENTLY, ALGORITHM=INPLACE, LOCK=NONE and their repairs.

* index.py: index_ensure's plans and their execution (PostgreSQL, MySQL/MariaDB, SQLite).
* constraint.py: constraint_ensure on PostgreSQL (and the dispatch); constraint_mysql.py: on MySQL/MariaDB.
* not_null.py: the PostgreSQL 12+ NOT NULL sequence (column_ensure, constraint_ensure's PRIMARY KEY).
* ptosc.py: pt-online-schema-change (column_ensure / enum_add method: online, index_ensure ddl: online).
* ensure.py: the one check/apply tail of index_ensure and constraint_ensure (plans are engines/base.py's Plan).
"""
