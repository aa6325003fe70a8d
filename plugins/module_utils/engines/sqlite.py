# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite adapter (Python standard library sqlite3).

The database option is the file path. The file must exist: a typo must not
silently create an empty database (the very failure of the empty-SQLite
incident). Identifiers are quoted with double quotes (doubled inside).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import urllib.parse

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    Adapter, DbopsError, LockTimeout, Step, did_you_mean, requested_default,
)


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def normalise_type(text):
    return ' '.join((text or '').replace('( ', '(').replace(' )', ')').split()).upper()


class SqliteAdapter(Adapter):
    engine = 'sqlite'

    def connect(self):
        path = os.path.expanduser(self.params['database'])
        self.path = path
        if not os.path.exists(path):
            raise DbopsError('SQLite database file %s does not exist. Check the path (database option); '
                             'this module never creates an empty database.' % path)
        try:
            self.conn = sqlite3.connect('file:%s?mode=rw' % path.replace('?', '%3f').replace('#', '%23'), uri=True,
                                        timeout=self.params.get('lock_timeout') or 5, isolation_level=None)
            self.conn.execute('PRAGMA schema_version').fetchone()
        except sqlite3.DatabaseError as e:
            raise DbopsError('Cannot open SQLite database %s: %s' % (path, e))
        self._lock_fd = None

    def server_info(self):
        return dict(engine='sqlite', flavour='sqlite', version=sqlite3.sqlite_version)

    def fetchall(self, query, params=()):
        return self.conn.execute(query, params).fetchall()

    # --- maintenance lock: flock on the database file (SQLite itself uses fcntl byte locks) ---
    def try_maintenance_lock(self):
        if self._lock_fd is None:
            self._lock_fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def unlock_maintenance(self):
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def close(self):
        super().close()
        if getattr(self, '_lock_fd', None) is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def maintenance_lock_holder(self):
        """Find the process holding the FLOCK on the file in /proc/locks (Linux)."""
        try:
            st = os.stat(self.path)
            with open('/proc/locks') as f:
                for line in f:
                    parts = line.split()
                    if len(parts) > 5 and parts[1] == 'FLOCK' and parts[5].rsplit(':', 1)[-1] == str(st.st_ino):
                        pid = parts[4]
                        if int(pid) == os.getpid():
                            continue
                        try:
                            with open('/proc/%s/cmdline' % pid, 'rb') as c:
                                cmd = c.read().replace(b'\0', b' ').decode(errors='replace').strip()[:200]
                        except OSError:
                            cmd = '?'
                        return 'process %s (%s)' % (pid, cmd)
        except (OSError, ValueError):
            pass
        return None

    # --- statements -----------------------------------------------------------------
    def execute(self, statement):
        try:
            self.conn.execute(statement)
        except sqlite3.OperationalError as e:
            if 'locked' in str(e) or 'busy' in str(e):
                raise LockTimeout(str(e))
            raise DbopsError('SQLite refused %s: %s' % (statement, e))
        except sqlite3.DatabaseError as e:
            raise DbopsError('SQLite refused %s: %s' % (statement, e))

    # --- columns -----------------------------------------------------------------------
    def table_names(self):
        return [r[0] for r in self.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")]

    def columns(self, table):
        rows = self.fetchall('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)', (table,))
        return {r[0]: dict(name=r[0], type=r[1], nullable=not r[2], default=r[3], comment=None) for r in rows}

    def plan_column(self, spec):
        table, column = spec['table'], spec['column']
        if table not in self.table_names():
            kind = self.fetchall("SELECT type FROM sqlite_master WHERE name = ? AND type <> 'table'", (table,))
            if kind:
                self.fail('%s is a %s, not a table; column_ensure changes the columns of tables only (change the '
                          '%s\'s definition instead). Nothing was changed.' % (quote_ident(table), kind[0][0], kind[0][0]))
            self.fail('Table %s does not exist in %s.%s' % (
                quote_ident(table), self.path, did_you_mean(table, self.table_names()) or
                (' The database has no tables at all: was it ever migrated?' if not self.table_names() else '')))
        current = self.columns(table).get(column)
        target = '%s.%s' % (quote_ident(table), quote_ident(column))
        res = dict(target=target, before=current)
        if spec.get('comment') is not None:
            self.fail('SQLite has no column comments; remove the comment option for SQLite.')
        if spec['state'] == 'absent':
            if current is None:
                return dict(res, steps=[], after=None)
            if not spec.get('allow_drop'):
                self.fail('Column %s exists; dropping it deletes its data for good. Set allow_drop: true to drop it '
                          '(after a backup). Nothing was changed.' % target)
            if sqlite3.sqlite_version_info < (3, 35, 0):
                self.fail('SQLite %s cannot drop columns (3.35 or later can).' % sqlite3.sqlite_version)
            stmt = 'ALTER TABLE %s DROP COLUMN %s' % (quote_ident(table), quote_ident(column))
            return dict(res, after=None, steps=[Step(stmt, 'drop the column')])
        managed_default, default_expr = requested_default(spec)
        desired = dict(name=column, type=spec['type'], nullable=spec['nullable'],
                       default=default_expr if managed_default else (current['default'] if current else None),
                       comment=None)
        if current is not None:
            differences = []
            if normalise_type(current['type']) != normalise_type(desired['type']):
                differences.append('type')
            if current['nullable'] != desired['nullable']:
                differences.append('nullable')
            if (current['default'] or '').strip() != (desired['default'] or '').strip():
                differences.append('default')
            if not differences:
                return dict(res, steps=[], after=current)
            if spec.get('alter'):
                self.fail('SQLite cannot change an existing column (%s differs: %s); it can only be done by '
                          'rebuilding the table (create new table, copy, drop, rename) in a migration. '
                          'Nothing was changed.' % (target, ', '.join(differences)))
            return dict(res, steps=[], after=desired, differences=differences, refused=True)
        if not spec['nullable'] and desired['default'] is None:
            self.fail('SQLite cannot add %s as NOT NULL without a default (existing rows would have no value). '
                      'Give a default, or add it nullable. Nothing was changed.' % target)
        stmt = 'ALTER TABLE %s ADD COLUMN %s %s' % (quote_ident(table), quote_ident(column), spec['type'])
        if not spec['nullable']:
            stmt += ' NOT NULL'
        if spec.get('default') is not None:
            stmt += ' DEFAULT %s' % spec['default']
        return dict(res, after=desired, steps=[Step(stmt, 'add the column')])

    def read_column(self, spec):
        return self.columns(spec['table']).get(spec['column'])

    # --- migration history (migration_status / migration_resolve) ---
    def mig_ident(self, name):
        return quote_ident(name)

    bool_literals = ('1', '0')

    def mig_text_literal(self, text):
        if '\x00' in text:
            raise DbopsError('A value for the history table contains a NUL character; SQLite text cannot hold it.')
        return "'%s'" % text.replace("'", "''")

    def mig_columns(self, table):
        if not self.fetchall("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)):
            return None
        return [r[0].lower() for r in self.fetchall('SELECT name FROM pragma_table_info(?)', (table,))]

    def mig_fetch(self, query):
        return self.fetchall(query)

    def mig_run_transaction(self, statements):
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

    # --- verification (db_verify) ---
    # Read-only helpers of db_verify.
    def verify_tables(self):
        return [(None, t) for t in self.table_names()]

    def verify_columns(self, schema, table):
        return self.columns(table)

    def verify_normalise_type(self, type_sql):
        return normalise_type(type_sql)

    def verify_count(self, schema, table):
        return self.fetchall('SELECT count(*) FROM %s' % quote_ident(table))[0][0]

    def verify_query(self, text):
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
