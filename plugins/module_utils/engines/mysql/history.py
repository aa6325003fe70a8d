# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL / MariaDB adapter, migration history part: the history table's quoting, literals, reads and
the one-transaction write of migration_status / migration_resolve (the shared part is in engines/base.py)."""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, LockTimeout
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import (
    ER_LOCK_WAIT_TIMEOUT, pymysql, quote_ident,
)


class MysqlHistory:
    """Migration history-table I/O."""

    # --- migration history (migration_status / migration_resolve) ---
    def history_ident(self, name):
        return quote_ident(name)

    def history_text_literal(self, text):
        return self.conn.escape(text)

    def history_columns(self, table):
        rows = self.fetchall(
            'SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() '
            'AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION', [table])
        if not rows:
            return None
        return [r[0].lower() for r in rows]

    def history_fetch(self, query):
        return self.fetchall(query)

    def history_run_transaction(self, statements):
        done = []
        with self._watching_blockers():
            self._history_run_transaction(statements, done)

    def _history_run_transaction(self, statements, done):
        statement = None
        try:
            self.conn.begin()
            with self.conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                    done.append(statement)
            self.conn.commit()
        except pymysql.MySQLError as e:
            try:
                self.conn.rollback()
            except pymysql.MySQLError:
                pass
            code = e.args[0] if e.args else None
            if code == ER_LOCK_WAIT_TIMEOUT:
                raise LockTimeout(str(e))
            raise DbopsError('%s refused %s: %s. The transaction was rolled back%s.' % (
                'MariaDB' if self.flavour == 'mariadb' else 'MySQL', statement, e.args[1] if len(e.args) > 1 else e,
                '' if not any(s.upper().startswith('CREATE') for s in done)
                else ' (a CREATE TABLE before it was committed: MySQL commits DDL at once)'))
