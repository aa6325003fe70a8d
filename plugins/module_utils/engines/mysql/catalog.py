# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL / MariaDB adapter, catalog part: what the server has (tables, columns, ENUM definitions,
character sets), and db_verify's read-only reads."""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, did_you_mean
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import pymysql, quote_ident


def parse_quoted_list(text, start):
    """Parse "'a','b''c')" from text[start:] (MySQL quoting: '' and backslash escapes).

    Returns (values, raw, end): the decoded values, their literals exactly as
    written, and the index just after the closing parenthesis.
    """
    values, raw, i, n = [], [], start, len(text)
    escapes = {'0': '\0', 'b': '\b', 'n': '\n', 'r': '\r', 't': '\t', 'Z': '\x1a'}
    while i < n:
        c = text[i]
        if c == "'":
            first = i
            i += 1
            buf = []
            while i < n:
                c = text[i]
                if c == '\\' and i + 1 < n:
                    buf.append(escapes.get(text[i + 1], text[i + 1]))
                    i += 2
                elif c == "'" and i + 1 < n and text[i + 1] == "'":
                    buf.append("'")
                    i += 2
                elif c == "'":
                    i += 1
                    break
                else:
                    buf.append(c)
                    i += 1
            values.append(''.join(buf))
            raw.append(text[first:i])
        elif c == ')':
            return values, raw, i + 1
        else:
            i += 1
    raise ValueError('unterminated value list')


class MysqlCatalog:
    """Catalog reads."""

    # --- names -------------------------------------------------------------------------
    def table_names(self):
        return [r[0] for r in self.fetchall(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_TYPE = 'BASE TABLE'")]

    def require_table(self, table):
        if table not in self.table_names():
            row = self.fetchone("SELECT TABLE_TYPE FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
                                "AND TABLE_NAME = %s", [table])
            if row and row[0] != 'BASE TABLE':
                kind = 'view' if 'VIEW' in row[0].upper() else row[0].lower()
                self.fail('%s is a %s, not a table; this module changes tables only (change the %s\'s definition '
                          'instead). Nothing was changed.' % (quote_ident(table), kind, kind))
            self.fail('Table %s does not exist in database %s.%s' % (
                quote_ident(table), self.params['database'], did_you_mean(table, self.table_names())))

    def show_create_line(self, table, column):
        """The column's line of SHOW CREATE TABLE, without the trailing comma."""
        create = self.fetchone('SHOW CREATE TABLE %s' % quote_ident(table))[1]
        prefix = '  %s ' % quote_ident(column)
        for line in create.splitlines():
            if line.startswith(prefix):
                return line.strip().rstrip(',')
        return None

    def column_rows(self, table):
        return self.fetchall(
            'SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, COLUMN_COMMENT, EXTRA, DATA_TYPE '
            'FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s '
            'ORDER BY ORDINAL_POSITION', [table])

    def require_column(self, table, column):
        rows = {r[0]: r for r in self.column_rows(table)}
        if column not in rows:
            self.fail('Column %s does not exist in table %s.%s' % (
                quote_ident(column), quote_ident(table), did_you_mean(column, list(rows))))
        return rows[column]

    # --- enums -----------------------------------------------------------------------------
    def enum_ref(self, params):
        """enum_add's options that name the ENUM (a column): the keyword arguments of enum_state / plan_enum_add."""
        return dict(table=params['table'], column=params['column'])

    def enum_state(self, table, column):
        line = self.show_create_line(table, column)
        head = '%s enum(' % quote_ident(column)
        values, _raw, _end = parse_quoted_list(line, len(head))
        return dict(column='%s.%s' % (quote_ident(table), quote_ident(column)), values=values, definition=line)

    # --- columns ---------------------------------------------------------------------------------
    def show_columns(self, table):
        """The table's columns as SHOW FULL COLUMNS describes them (works for temporary tables too)."""
        with self.conn.cursor() as cur:
            cur.execute('SHOW FULL COLUMNS FROM %s' % quote_ident(table))
            rows = cur.fetchall()
        return {r[0]: dict(name=r[0], type=r[1], nullable=r[3] == 'YES', default=r[5], comment=r[8] or None,
                           collation=r[2], extra=r[6] or None) for r in rows}

    def table_charset(self, table):
        """(character set, collation) of the table's default, for a probe that reads types the same way."""
        row = self.fetchone(
            'SELECT c.CHARACTER_SET_NAME, t.TABLE_COLLATION FROM information_schema.TABLES t '
            'JOIN information_schema.COLLATIONS c ON c.COLLATION_NAME = t.TABLE_COLLATION '
            'WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_NAME = %s', [table])
        return row if row else (None, None)

    def read_column(self, spec):
        return self.show_columns(spec['table']).get(spec['column'])

    # --- verification (db_verify) ---
    # Read-only helpers of db_verify.
    def catalog_tables(self):
        return [(None, t) for t in sorted(self.table_names())]

    def catalog_columns(self, schema, table):
        return self.show_columns(table)

    def catalog_normalise_type(self, type_sql):
        """The server's spelling of a type: probe_column's session-private temporary table, dropped at once."""
        return self.probe_column(dict(column='c', type=type_sql, nullable=True, default=None, comment=None))['type']

    def catalog_row_count(self, schema, table):
        return self.fetchone('SELECT COUNT(*) FROM %s' % quote_ident(table))[0]

    def run_readonly_query(self, text):
        """First row of the operator's query, once it is proven to only read.

        sqlcheck.readonly_query parses it (sqlglot, mysql dialect): one SELECT (WITH, UNION) or SHOW, no INTO
        (OUTFILE, DUMPFILE, variables), no FOR UPDATE / LOCK IN SHARE MODE, no executable comment, no function
        of the deny list (GET_LOCK, SLEEP, LOAD_FILE, ...), no function sqlglot does not know unless it is on
        the list of known pure built-ins; stored functions are refused (information_schema.ROUTINES). The
        session allows one statement per call (no CLIENT.MULTI_STATEMENTS). Then it runs inside
        START TRANSACTION READ ONLY, rolled back, in a session whose transactions are READ ONLY too (a DDL
        statement would otherwise commit implicitly and run outside it): the second layer.
        """
        calls = sqlcheck.readonly_query(text, 'mysql')
        self.require_one_statement_protocol()
        names = list(calls['functions'])
        if names:
            stored = self.fetchall(
                "SELECT ROUTINE_SCHEMA, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_TYPE = 'FUNCTION' "
                "AND ROUTINE_SCHEMA = DATABASE() AND UPPER(ROUTINE_NAME) IN (%s)" % ', '.join(['%s'] * len(names)),
                names)
            if stored:
                raise sqlcheck.SqlRefused('The query calls the stored function %s.%s; db_verify never runs stored '
                                          'functions (a function declared DETERMINISTIC or READS SQL DATA can still '
                                          'write). %s' % (stored[0][0], stored[0][1], sqlcheck.NOTHING))
        with self.conn.cursor() as cur:
            cur.execute('SET SESSION TRANSACTION READ ONLY')
            try:
                cur.execute('START TRANSACTION READ ONLY')
                try:
                    cur.execute(text)
                    return cur.fetchone() if cur.description else None
                finally:
                    cur.execute('ROLLBACK')
            except pymysql.MySQLError as e:
                raise DbopsError('The query failed: %s. It runs in a READ ONLY transaction, as one statement: it '
                                 'cannot change data.' % (e.args[1] if len(e.args) > 1 else e))
            finally:
                cur.execute('SET SESSION TRANSACTION READ WRITE')
