# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL adapter, migration history part: the history table's quoting, literals, reads and the
one-transaction write of migration_status / migration_resolve (the shared part is in engines/base.py)."""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, LockTimeout
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql.connection import (
    pg_errors, psycopg, sql,
)


class PostgresHistory:
    """Migration history-table I/O."""

    # --- migration history (migration_status / migration_resolve) ---
    def history_split(self, table):
        if '.' in table:
            schema, name = table.split('.', 1)
            return schema, name
        return None, table

    def history_ident(self, name):
        """A table may be given as schema.table; a column never has a dot."""
        schema, table = self.history_split(name)
        return self.render(sql.Identifier(schema, table) if schema else sql.Identifier(table))

    bool_literals = ('true', 'false')

    def history_bytes_literal(self, value):
        return "'\\x%s'::bytea" % value.hex()

    def history_text_literal(self, text):
        return self.render(sql.Literal(text))

    def history_columns(self, table):
        schema, name = self.history_split(table)
        rows = self.fetchall(
            'SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid '
            'JOIN pg_namespace n ON n.oid = c.relnamespace '
            "WHERE c.relname = %s AND n.nspname = COALESCE(%s, current_schema()) AND c.relkind IN ('r', 'p') "
            'AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum', [name, schema])
        if not rows:
            return None
        return [r[0].lower() for r in rows]

    def history_fetch(self, query):
        rows = self.fetchall(query)
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]

    def history_run_transaction(self, statements):
        try:
            with self._watching_blockers(statements):
                try:
                    with self.conn.transaction():
                        for statement in statements:
                            self.conn.execute(statement)
                except pg_errors.LockNotAvailable as e:
                    raise LockTimeout(str(e).strip())
        except psycopg.Error as e:
            raise DbopsError('PostgreSQL refused %s: %s%s. The transaction was rolled back: nothing was changed.' % (
                '; '.join(statements), str(e).strip(), ' (SQLSTATE %s)' % e.sqlstate if e.sqlstate else ''))
