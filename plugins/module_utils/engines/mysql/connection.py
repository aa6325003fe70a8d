# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL 8 / MariaDB 10.5+ adapter, connection part (PyMySQL): connecting, the watchdog, running one
statement, the lock-blocker watch and the maintenance lock.

What differs between MySQL and MariaDB is in the FLAVOURS table, not in
scattered ifs. Identifiers are quoted with backticks (a backtick doubled),
values are passed as parameters or escaped by PyMySQL's connection.escape.
PyMySQL does not enable multi-statements, so one execute is one statement.
"""

from __future__ import annotations

import contextlib
import math
import os
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    BlockerWatcher, DbopsError, LockTimeout, Unsupported,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.redact import redact_query

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

    # --- lock blockers: who holds what our statement waits for ------------------------------
    # With performance_schema on (and its metadata-lock instrument enabled), the holders of the
    # metadata lock our statement waits for are known exactly (metadata_locks, read during the
    # wait). Without it (MariaDB's default), the candidates are the sessions of the same database
    # with an InnoDB transaction open since before the wait (INNODB_TRX, read while our session is
    # seen waiting for a metadata lock, and again after the timeout if that found none): they hold
    # the metadata locks of every table they touched, but some of them may not touch ours, and a
    # blocker whose default database is another one is not seen (the module then pauses instead of
    # watching).
    MDL_HOLDERS = (
        "SELECT DISTINCT t.PROCESSLIST_ID, t.PROCESSLIST_USER, t.PROCESSLIST_COMMAND, CAST(x.trx_started AS CHAR), "
        "LEFT(COALESCE(t.PROCESSLIST_INFO, x.trx_query, s.SQL_TEXT), 2000), "
        "COALESCE(TIMESTAMPDIFF(SECOND, x.trx_started, NOW()), t.PROCESSLIST_TIME), h.OBJECT_SCHEMA, h.OBJECT_NAME "
        "FROM performance_schema.metadata_locks w "
        "JOIN performance_schema.threads me ON me.THREAD_ID = w.OWNER_THREAD_ID "
        "JOIN performance_schema.metadata_locks h ON h.OBJECT_TYPE = w.OBJECT_TYPE "
        "AND h.OBJECT_SCHEMA <=> w.OBJECT_SCHEMA AND h.OBJECT_NAME <=> w.OBJECT_NAME "
        "AND h.LOCK_STATUS = 'GRANTED' AND h.OWNER_THREAD_ID <> w.OWNER_THREAD_ID "
        "JOIN performance_schema.threads t ON t.THREAD_ID = h.OWNER_THREAD_ID "
        "LEFT JOIN information_schema.INNODB_TRX x ON x.trx_mysql_thread_id = t.PROCESSLIST_ID "
        "LEFT JOIN performance_schema.events_statements_current s ON s.THREAD_ID = t.THREAD_ID "
        "WHERE w.LOCK_STATUS = 'PENDING' AND me.PROCESSLIST_ID = %s AND t.PROCESSLIST_ID IS NOT NULL")

    MDL_STILL = (
        "SELECT DISTINCT t.PROCESSLIST_ID FROM performance_schema.metadata_locks h "
        "JOIN performance_schema.threads t ON t.THREAD_ID = h.OWNER_THREAD_ID "
        "WHERE h.LOCK_STATUS = 'GRANTED' AND t.PROCESSLIST_ID = %s AND h.OBJECT_SCHEMA <=> %s AND h.OBJECT_NAME <=> %s")

    TRX_HOLDERS = (
        "SELECT p.ID, p.USER, p.COMMAND, CAST(t.trx_started AS CHAR), LEFT(COALESCE(p.INFO, t.trx_query), 2000), "
        "TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) "
        "FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id "
        "WHERE p.ID NOT IN (%s, CONNECTION_ID()) AND p.DB <=> DATABASE() "
        "AND COALESCE(p.STATE, '') NOT LIKE 'Waiting for%%' AND TIMESTAMPDIFF(SECOND, t.trx_started, NOW()) >= %s")

    # The same, read during the wait: only while our own session waits for a metadata lock (a long statement
    # that is running, not waiting, costs no INNODB_TRX read).
    TRX_HOLDERS_WAITING = TRX_HOLDERS + (
        " AND EXISTS (SELECT 1 FROM information_schema.PROCESSLIST w WHERE w.ID = %s "
        "AND w.STATE LIKE 'Waiting for%%metadata lock%%')")

    def _monitor(self):
        """The module's second connection, opened at the first lock wait and kept until close. It reads
        performance_schema / information_schema only and takes no metadata lock on any table."""
        if getattr(self, '_monitor_conn', None) is None:
            kw = dict(self._connect_kw)
            kw['program_name'] = 'dbops.maintenance/blocker-watch'
            self._monitor_conn = pymysql.connect(**kw)
        return self._monitor_conn

    def _monitor_rows(self, query, params):
        with self._monitor().cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def metadata_locks_on(self):
        """performance_schema is on and instruments metadata locks (off by default on MariaDB)."""
        if getattr(self, '_mdl_on', None) is None:
            try:
                rows = self._monitor_rows(
                    "SELECT ENABLED FROM performance_schema.setup_instruments WHERE NAME = 'wait/lock/metadata/sql/mdl' "
                    "AND @@performance_schema = 1", None)
                self._mdl_on = bool(rows) and rows[0][0] == 'YES'
            except pymysql.MySQLError:
                self._mdl_on = False
        return self._mdl_on

    @contextlib.contextmanager
    def _watching_blockers(self):
        """While the block runs and waits, note who blocks it: the metadata-lock holders (performance_schema)
        or, without it, the sessions with an InnoDB transaction that was open before the wait began
        (INNODB_TRX, read during the wait, so a blocker that ends right at the timeout is still named).
        After a lock timeout with nothing seen during the wait, INNODB_TRX is read again."""
        t0 = time.monotonic()

        def poll():
            if self.metadata_locks_on():
                return self._mdl_holders()
            return self._trx_holders(age=int(time.monotonic() - t0), waiting=True)
        watcher = BlockerWatcher(poll, delay=0.2).start()
        try:
            yield
        except LockTimeout:
            self._last_blockers = watcher.stop()
            if not self._last_blockers and not self.metadata_locks_on():
                # INNODB_TRX is a cache that the server refreshes only when nobody has read it for 0.1 s (any
                # session: on a busy server it can be stale for longer): read it again, 0.15 s apart, for up to
                # TRX_READ_FOR seconds (on a loaded machine three quick reads once all came back empty).
                until = time.monotonic() + self.TRX_READ_FOR
                while True:
                    self._last_blockers = self._trx_holders()
                    if self._last_blockers or time.monotonic() >= until:
                        break
            raise
        finally:
            watcher.stop()

    def _blocker(self, r, how):
        return dict(pid=r[0], user=r[1], state='open transaction, %s' % r[2] if r[3] else r[2],
                    transaction_start=r[3], query=redact_query(r[4], 'mysql') or '(idle)',
                    held_s=float(r[5]) if r[5] is not None else None, seen_by=how,
                    identity=[r[0], r[3]] + ([r[6], r[7]] if how == 'metadata_locks' else []))

    def _mdl_holders(self):
        return [self._blocker(r, 'metadata_locks') for r in self._monitor_rows(self.MDL_HOLDERS, [self.conn.thread_id()])]

    # information_schema.INNODB_TRX is served from a cache that InnoDB refreshes only when it has not been read
    # for 0.1 s (trx0i_s: CACHE_MIN_IDLE_TIME_US); reading it again sooner returns the same, possibly stale, rows.
    TRX_CACHE_IDLE = 0.15
    TRX_READ_FOR = 1.5

    def _trx_holders(self, age=None, waiting=False):
        """Sessions of this database with an InnoDB transaction at least `age` seconds old (default: one that
        held the lock for the whole wait is at least lock_wait_timeout old; trx_started has whole seconds:
        one second of slack)."""
        pause = getattr(self, '_trx_read_at', 0.0) + self.TRX_CACHE_IDLE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            if age is None:
                age = max(0, int(math.ceil(self.params.get('lock_timeout') or 1)) - 1)
            if waiting:
                rows = self._monitor_rows(self.TRX_HOLDERS_WAITING, [self.conn.thread_id(), age, self.conn.thread_id()])
            else:
                rows = self._monitor_rows(self.TRX_HOLDERS, [self.conn.thread_id(), age])
            return [self._blocker(r, 'innodb_trx') for r in rows]
        except pymysql.MySQLError as e:
            self.blockers_unknown = 'cannot read INNODB_TRX: %s' % (e.args[1] if len(e.args) > 1 else e)
            return []
        finally:
            self._trx_read_at = time.monotonic()

    def prepare_blocker_watch(self):
        self._monitor()
        self.metadata_locks_on()

    def lock_blockers(self):
        return getattr(self, '_last_blockers', [])

    def blockers_still_there(self, blockers):
        """metadata_locks: the blockers that still hold a granted lock on the same object. INNODB_TRX
        (candidates, some maybe unrelated): all of them while none has ended its transaction, and none
        as soon as one has, so that an unrelated long transaction never holds the module back."""
        try:
            if all(b.get('seen_by') == 'metadata_locks' for b in blockers):
                return [b for b in blockers
                        if self._monitor_rows(self.MDL_STILL, [b['pid'], b['identity'][2], b['identity'][3]])]
            now = {(r['pid'], r['transaction_start']) for r in self._trx_holders()}
        except pymysql.MySQLError:
            return None
        if all((b['pid'], b['transaction_start']) in now for b in blockers):
            return blockers
        return []

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
