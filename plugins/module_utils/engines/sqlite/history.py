# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite adapter, migration history part: the history table's quoting, literals, reads and the
one-transaction write (BEGIN IMMEDIATE) of migration_status / migration_resolve."""

from __future__ import annotations

import sqlite3

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, LockTimeout
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.connection import quote_ident


class SqliteHistory:
    """Migration history-table I/O."""

    # --- migration history (migration_status / migration_resolve) ---
    def history_ident(self, name):
        return quote_ident(name)

    bool_literals = ('1', '0')

    def history_text_literal(self, text):
        if '\x00' in text:
            raise DbopsError('A value for the history table contains a NUL character; SQLite text cannot hold it.')
        return "'%s'" % text.replace("'", "''")

    def history_columns(self, table):
        if not self.fetchall("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)):
            return None
        return [r[0].lower() for r in self.fetchall('SELECT name FROM pragma_table_info(?)', (table,))]

    def history_fetch(self, query):
        return self.fetchall(query)

    def history_run_transaction(self, statements):
        try:
            self.conn.execute('BEGIN IMMEDIATE')
        except sqlite3.OperationalError as e:
            if 'locked' in str(e) or 'busy' in str(e):
                raise LockTimeout(str(e))
            raise DbopsError('SQLite could not start a transaction: %s' % e)
        statement = None
        try:
            for statement in statements:
                self.conn.execute(statement)
            self.conn.execute('COMMIT')
        except sqlite3.DatabaseError as e:
            self.conn.execute('ROLLBACK')
            if 'locked' in str(e) or 'busy' in str(e):
                raise LockTimeout(str(e))
            raise DbopsError('SQLite refused %s: %s. The transaction was rolled back: nothing was changed.'
                             % (statement, e))
