# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL 8 / MariaDB 10.5+ adapter, connection part (PyMySQL): connecting, the watchdog, running one
statement and the maintenance lock (the lock-blocker watch is in blockers.py).

What differs between MySQL and MariaDB is in the FLAVOURS table, not in
scattered ifs. Identifiers are quoted with backticks (a backtick doubled),
values are passed as parameters or escaped by PyMySQL's connection.escape.
PyMySQL does not enable multi-statements, so one execute is one statement.
"""

from __future__ import annotations

import math
import os

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    DbopsError, LockTimeout, Unsupported,
)

# The one import of the driver: catalog.py and history.py take pymysql from here.
try:
    import pymysql
    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - depends on the managed host
    pymysql = None
    HAS_PYMYSQL = False
    PYMYSQL_IMPORT_ERROR = e

from ansible_collections.dbops.maintenance.plugins.module_utils import watchdog as wd

ER_LOCK_WAIT_TIMEOUT = 1205
ER_ALTER_OPERATION_NOT_SUPPORTED = (1845, 1846)

# Everything that differs between the two flavours.
FLAVOURS = {
    'mariadb': dict(
        # SET SESSION max_statement_time takes seconds (float).
        statement_timeout=('max_statement_time', float),
        # information_schema.COLUMNS.COLUMN_DEFAULT is an SQL expression ('a', current_timestamp(), NULL).
        column_default_is_sql=True,
        dump_tool='mariadb-dump',
        client_tool='mariadb',
    ),
    'mysql': dict(
        # max_execution_time takes milliseconds and limits SELECT statements only.
        statement_timeout=('max_execution_time', lambda s: int(round(float(s) * 1000))),
        column_default_is_sql=False,
        dump_tool='mysqldump',
        client_tool='mysql',
    ),
}


def quote_ident(name):
    return '`%s`' % name.replace('`', '``')


class MysqlConnection:
    """Connecting, probing, executing, the blocker watch and the maintenance lock."""

    def connect(self):
        if not HAS_PYMYSQL:
            self.module.fail_json(msg=missing_required_lib('PyMySQL (pip install PyMySQL)'),
                                  exception=str(PYMYSQL_IMPORT_ERROR))
        p = self.params
        kw = dict(database=p['database'], connect_timeout=p['connect_timeout'], autocommit=True,
                  charset='utf8mb4', program_name='dbops.maintenance')
        config = os.path.expanduser(p.get('config_file') or '')
        if config and os.path.exists(config):
            kw['read_default_file'] = config
        for opt, key in (('login_host', 'host'), ('login_port', 'port'), ('login_user', 'user'),
                         ('login_password', 'password'), ('login_unix_socket', 'unix_socket')):
            if p.get(opt) is not None:
                kw[key] = p[opt]
        ssl = {}
        if p.get('ca_cert'):
            ssl['ca'] = p['ca_cert']
        if p.get('client_cert'):
            ssl['cert'] = p['client_cert']
        if p.get('client_key'):
            ssl['key'] = p['client_key']
        mode = p.get('ssl_mode')
        if mode and mode != 'disable':
            ssl.setdefault('check_hostname', mode == 'verify-full')
            if mode in ('require', 'prefer', 'allow') and 'ca' not in ssl:
                kw['ssl_disabled'] = False
                kw['ssl_verify_cert'] = False
            else:
                kw['ssl_verify_cert'] = mode in ('verify-ca', 'verify-full')
        if ssl and mode != 'disable':
            kw['ssl'] = ssl
        if mode == 'disable':
            kw['ssl_disabled'] = True
        # PyMySQL's connect_timeout covers the TCP connect only: read_timeout/write_timeout bound the handshake,
        # the authentication and SET NAMES. After that the watchdog bounds every wait (a statement may be
        # silent for as long as it runs, so a socket timeout would cut off a long ALTER on a live server).
        kw.update(read_timeout=p['connect_timeout'], write_timeout=p['connect_timeout'])
        self._connect_kw = kw  # the monitoring connection (lock blockers) opens with the same options
        try:
            self.conn = _WatchedConnection(**kw)
        except pymysql.MySQLError as e:
            code = e.args[0] if e.args else None
            silent = code in (2003, 2013) and 'timed out' in str(e)
            raise DbopsError('Cannot connect to MySQL/MariaDB database %s at %s (phase: connect): %s%s' % (
                p['database'], self.endpoint(), self.redact(e),
                ' - no answer within connect_timeout=%ss. Check that the server is up and answering, and the host '
                'and port.' % p['connect_timeout'] if silent else ''))
        self.conn._read_timeout = None
        self.conn._write_timeout = None
        self.watchdog = wd.Watchdog('MySQL/MariaDB server at %s' % self.endpoint(), p['connect_timeout'],
                                    probe=self._probe, abort=self._abort)
        self.conn.dbops_watchdog = self.watchdog
        self.version = self.fetchone('SELECT VERSION()')[0]
        self.flavour = 'mariadb' if 'mariadb' in self.version.lower() else 'mysql'
        self.features = FLAVOURS[self.flavour]
        if p.get('lock_timeout') is not None:
            secs = max(1, int(math.ceil(p['lock_timeout'])))
            self.conn.cursor().execute('SET SESSION lock_wait_timeout = %s', [secs])
            self.conn.cursor().execute('SET SESSION innodb_lock_wait_timeout = %s', [secs])
        if p.get('statement_timeout'):
            name, convert = self.features['statement_timeout']
            self.conn.cursor().execute('SET SESSION %s = %%s' % name, [convert(p['statement_timeout'])])

    def endpoint(self):
        """host:port (or socket) of the server, for messages."""
        p = self.params
        if p.get('login_unix_socket'):
            return p['login_unix_socket']
        return '%s:%s' % (p.get('login_host') or 'localhost', p.get('login_port') or 3306)

    def _probe(self):
        """Watchdog: is the server alive, and does it still have our session? (a fresh connection)"""
        thread_id = self.conn.thread_id()
        kw = dict(self._connect_kw)
        kw['program_name'] = 'dbops.maintenance/watchdog'
        try:
            c = pymysql.connect(**kw)
            try:
                with c.cursor() as cur:
                    cur.execute('SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = %s', [thread_id])
                    row = cur.fetchone()
            finally:
                c.close()
        except pymysql.MySQLError as e:
            code = e.args[0] if e.args else None
            # 2003 cannot connect, 2006 gone away, 2013 lost (timed out): no answer; any other error is an answer
            return wd.SILENT if code in (2003, 2006, 2013) else wd.ALIVE
        return wd.ALIVE if row else wd.GONE

    def _abort(self):
        """Watchdog: close our socket under the blocked driver."""
        import socket
        sock = getattr(self.conn, '_sock', None)
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)

    def server_info(self):
        return dict(engine='mysql', flavour=self.flavour, version=self.version.split('-')[0],
                    version_full=self.version)

    def fetchall(self, query, params=None):
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def fetchone(self, query, params=None):
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchone()

    def literal(self, value):
        return self.conn.escape(value)

    # --- maintenance lock ----------------------------------------------------
    def lock_name(self):
        name = 'dbops.maintenance:%s' % self.params['database']
        if len(name) > 64:
            import hashlib
            name = 'dbops.maintenance:%s' % hashlib.sha1(self.params['database'].encode()).hexdigest()
        return name

    def try_maintenance_lock(self):
        return self.fetchone('SELECT GET_LOCK(%s, 0)', [self.lock_name()])[0] == 1

    def unlock_maintenance(self):
        self.fetchone('SELECT RELEASE_LOCK(%s)', [self.lock_name()])

    def maintenance_lock_holder(self):
        row = self.fetchone(
            'SELECT p.ID, p.USER, p.HOST, p.TIME FROM information_schema.PROCESSLIST p WHERE p.ID = IS_USED_LOCK(%s)',
            [self.lock_name()])
        if not row:
            return None
        return 'connection id %s, user %s from %s, connected for %ss' % row

    # --- statements ---------------------------------------------------------------
    def execute(self, statement):
        with self._watching_blockers():
            try:
                with self.conn.cursor() as cur:
                    cur.execute(statement)
            except pymysql.MySQLError as e:
                code = e.args[0] if e.args else None
                if code == ER_LOCK_WAIT_TIMEOUT:
                    raise LockTimeout(str(e))
                if code in ER_ALTER_OPERATION_NOT_SUPPORTED:
                    raise Unsupported(e.args[1] if len(e.args) > 1 else str(e))
                raise DbopsError('%s refused %s: %s' % (
                    'MariaDB' if self.flavour == 'mariadb' else 'MySQL', statement,
                    e.args[1] if len(e.args) > 1 else e))

    def require_one_statement_protocol(self):
        """The session must not have CLIENT.MULTI_STATEMENTS: then one execute can only ever be one statement."""
        if self.conn.client_flag & pymysql.constants.CLIENT.MULTI_STATEMENTS:
            raise DbopsError('The MySQL connection allows several statements per call (CLIENT.MULTI_STATEMENTS); '
                             'dbops.maintenance never runs an SQL-valued option on such a connection. Nothing was run.')


if HAS_PYMYSQL:
    class _WatchedConnection(pymysql.connections.Connection):
        """Every command sent to the server, and the wait for its answer, runs under the watchdog."""

        dbops_watchdog = None

        def _watched(self, label, call, *args, **kwargs):
            watch = self.dbops_watchdog
            if watch is None:
                return call(*args, **kwargs)
            if watch.tripped:
                raise watch.failure()
            try:
                with watch.waiting(label):
                    return call(*args, **kwargs)
            except (pymysql.MySQLError, OSError) as e:
                if watch.tripped:
                    raise watch.failure() from e
                raise

        def close(self):
            if self.dbops_watchdog is not None:
                self.dbops_watchdog.close()
            super().close()

        def query(self, sql, unbuffered=False):
            text = sql.decode('utf-8', 'replace') if isinstance(sql, bytes) else sql
            return self._watched('query %s' % wd.shorten(text), super().query, sql, unbuffered)

        def commit(self):
            return self._watched('COMMIT', super().commit)

        def rollback(self):
            return self._watched('ROLLBACK', super().rollback)

        def begin(self):
            return self._watched('BEGIN', super().begin)

        def ping(self, reconnect=True):
            return self._watched('ping', super().ping, reconnect)
else:  # pragma: no cover - connect() fails with missing_required_lib first
    _WatchedConnection = None
