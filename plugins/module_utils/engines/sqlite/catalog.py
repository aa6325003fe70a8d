# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite adapter, catalog part: tables and columns (sqlite_master, pragma_table_info), and db_verify's
read-only reads (the operator's query on a connection that cannot write)."""

from __future__ import annotations

import os
import sqlite3
import urllib.parse

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.connection import quote_ident


def normalise_type(text):
    return ' '.join((text or '').replace('( ', '(').replace(' )', ')').split()).upper()


class SqliteCatalog:
    """Catalog reads."""

    # --- columns -----------------------------------------------------------------------
    def table_names(self):
        return [r[0] for r in self.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")]

    def columns(self, table):
        rows = self.fetchall('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)', (table,))
        return {r[0]: dict(name=r[0], type=r[1], nullable=not r[2], default=r[3], comment=None) for r in rows}

    def read_column(self, spec):
        return self.columns(spec['table']).get(spec['column'])

    # --- verification (db_verify) ---
    # Read-only helpers of db_verify.
    def catalog_tables(self):
        return [(None, t) for t in self.table_names()]

    def catalog_columns(self, schema, table):
        return self.columns(table)

    def catalog_normalise_type(self, type_sql):
        return normalise_type(type_sql)

    def catalog_row_count(self, schema, table):
        return self.fetchall('SELECT count(*) FROM %s' % quote_ident(table))[0][0]

    def run_readonly_query(self, text):
        """First row of the operator's query, once it is proven to only read, on a connection that cannot write.

        sqlcheck.readonly_query parses it (sqlglot, sqlite dialect): one SELECT (WITH, UNION, VALUES). It then
        runs on a connection of its own, opened with mode=ro, PRAGMA query_only, no room for an attached
        database (SQLITE_LIMIT_ATTACHED 0) and an authorizer that allows only reading (SQLITE_SELECT,
        SQLITE_READ, WITH RECURSIVE) and the functions of sqlcheck.SQLITE_ALLOWED_FUNCTIONS; everything
        else (ATTACH, PRAGMA, writes, VACUUM, ...) is denied by SQLite itself.
        """
        sqlcheck.readonly_query(text, 'sqlite')
        uri = 'file:%s?mode=ro' % urllib.parse.quote(os.path.abspath(self.path))
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=self.params.get('lock_timeout') or 5)
        except sqlite3.Error as e:
            raise DbopsError('Cannot open %s read-only for the query: %s' % (self.path, e))
        try:
            conn.execute('PRAGMA query_only = ON')
            if hasattr(conn, 'setlimit'):
                conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            conn.set_authorizer(_read_only_authorizer)
            cur = conn.execute(text)
            try:
                return cur.fetchone() if cur.description else None
            finally:
                cur.close()
        except sqlite3.Error as e:
            raise DbopsError('The query failed: %s. It runs on a read-only connection (mode=ro, PRAGMA query_only, '
                             'an authorizer that allows only reading), as one statement: it cannot change data.' % e)
        finally:
            conn.close()


_READ_ACTIONS = frozenset(getattr(sqlite3, n) for n in ('SQLITE_SELECT', 'SQLITE_READ', 'SQLITE_RECURSIVE')
                          if hasattr(sqlite3, n))


def _read_only_authorizer(action, arg1, arg2, _dbname, _source):
    """sqlite3 authorizer of db_verify's queries: reading, and the allowed functions; nothing else."""
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or '').lower() in sqlcheck.SQLITE_ALLOWED_FUNCTIONS:
        return sqlite3.SQLITE_OK
    del arg1
    return sqlite3.SQLITE_DENY
