# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL adapter, connection part (psycopg 3): connecting, the watchdog, running one statement,
the lock-blocker watch and the maintenance lock.

The connection is in autocommit mode, so each DDL statement is its own
transaction (ALTER TYPE ... ADD VALUE must run outside a transaction block
before PostgreSQL 12) and a statement that fails leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import time

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    BlockerWatcher, DbopsError, LockTimeout,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql.locks import (
    holder_queries as lock_holder_queries,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.redact import redact_query

# The one import of the driver: catalog.py, ddl.py and history.py take psycopg, sql and pg_errors from here.
try:
    import psycopg
    from psycopg import sql  # noqa: F401 pylint: disable=unused-import
    from psycopg import errors as pg_errors
    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - depends on the managed host
    psycopg = sql = pg_errors = None
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = e

from ansible_collections.dbops.maintenance.plugins.module_utils import watchdog as wd

# First key of the two-key advisory lock: the bytes "dbop". The second key is
# hashtext(current_database()), so the lock is per database.
MAINTENANCE_LOCK_CLASS = 0x64626F70
APPLICATION_NAME = 'dbops.maintenance'


class PostgresConnection:
    """Connecting, probing, executing, the blocker watch and the maintenance lock."""

    # --- connection ------------------------------------------------------------
    def conninfo(self):
        p = self.params
        kw = dict(dbname=p['database'], connect_timeout=p['connect_timeout'],
                  application_name='%s/%s' % (APPLICATION_NAME, self.module._name.split('.')[-1]))
        if p.get('login_unix_socket'):
            kw['host'] = p['login_unix_socket']
        elif p.get('login_host'):
            kw['host'] = p['login_host']
        for opt, key in (('login_port', 'port'), ('login_user', 'user'), ('login_password', 'password'),
                         ('ssl_mode', 'sslmode'), ('ca_cert', 'sslrootcert'), ('client_cert', 'sslcert'),
                         ('client_key', 'sslkey')):
            if p.get(opt) is not None:
                kw[key] = p[opt]
        return kw

    def endpoint(self):
        """host:port (or socket directory) of the server, for messages."""
        p = self.params
        host = p.get('login_unix_socket') or p.get('login_host') or 'the default host (PGHOST or the local socket)'
        return '%s:%s' % (host, p.get('login_port') or 'default port')

    def connect(self):
        """Connect with connect_timeout bounding the whole start-up, and a watchdog on every later wait
        (plugins/module_utils/watchdog.py): a server that stops answering is found and the task fails."""
        if not HAS_PSYCOPG:
            self.module.fail_json(msg=missing_required_lib('psycopg (psycopg 3, e.g. pip install "psycopg[binary]")'),
                                  exception=str(PSYCOPG_IMPORT_ERROR))
        p = self.params
        try:
            self.conn = _WatchedConnection.connect(autocommit=True, cursor_factory=_WatchedCursor, **self.conninfo())
        except psycopg.OperationalError as e:
            text = self.redact(str(e).strip())
            if 'timeout expired' in text:  # psycopg.errors.ConnectionTimeout (3.1+: the whole start-up is bounded)
                text = ('no answer within connect_timeout=%ss (%s). Check that the server is up and answering, and '
                        'the host and port.' % (p['connect_timeout'], text))
            raise DbopsError('Cannot connect to PostgreSQL database %s at %s (phase: connect): %s'
                             % (p['database'], self.endpoint(), text))
        self.watchdog = wd.Watchdog('PostgreSQL server at %s' % self.endpoint(), p['connect_timeout'],
                                    probe=self._probe, abort=self._abort)
        self.conn.dbops_watchdog = self.watchdog
        self.watchdog.label = 'session setup'
        settings = {}
        if p.get('lock_timeout') is not None:
            settings['lock_timeout'] = '%dms' % int(round(p['lock_timeout'] * 1000))
        if p.get('statement_timeout') is not None:
            settings['statement_timeout'] = '%dms' % int(round(p['statement_timeout'] * 1000))
        for name, value in settings.items():
            self.conn.execute('SELECT set_config(%s, %s, false)', [name, value])
        self.watchdog.label = 'transaction control (BEGIN/COMMIT/ROLLBACK)'

    def _probe(self):
        """Watchdog: is the server alive, and does it still have our session? (a fresh connection)"""
        pid = self.conn.info.backend_pid
        info = self.conninfo()
        info['application_name'] = '%s/watchdog' % APPLICATION_NAME
        try:
            with psycopg.connect(autocommit=True, **info) as c:
                row = c.execute('SELECT state FROM pg_stat_activity WHERE pid = %s', [pid]).fetchone()
        except psycopg.Error as e:
            # an answer from the server (an error with an SQLSTATE: too many connections, auth) proves it alive
            return wd.ALIVE if getattr(e, 'sqlstate', None) else wd.SILENT
        return wd.ALIVE if row else wd.GONE

    def _abort(self):
        """Watchdog: close our socket under the blocked driver (a cancel request needs an answering server)."""
        import os
        import socket
        fd = os.dup(self.conn.pgconn.socket)
        s = socket.socket(fileno=fd)
        try:
            s.shutdown(socket.SHUT_RDWR)
        finally:
            s.close()

    @property
    def server_version(self):
        return self.conn.info.server_version

    def server_info(self):
        v = self.server_version
        return dict(engine='postgresql', flavour='postgresql', version='%d.%d' % (v // 10000, v % 10000),
                    version_num=v)

    def render(self, composed):
        return composed.as_string(self.conn)

    def fetchall(self, query, params=None):
        return self.conn.execute(query, params).fetchall()

    def fetchone(self, query, params=None):
        return self.conn.execute(query, params).fetchone()

    # --- maintenance lock --------------------------------------------------------
    def try_maintenance_lock(self):
        return self.fetchone('SELECT pg_try_advisory_lock(%s, hashtext(current_database()))',
                             [MAINTENANCE_LOCK_CLASS])[0]

    def unlock_maintenance(self):
        self.conn.execute('SELECT pg_advisory_unlock(%s, hashtext(current_database()))', [MAINTENANCE_LOCK_CLASS])

    def maintenance_lock_holder(self):
        row = self.fetchone(
            "SELECT a.pid, a.usename, a.application_name, a.client_addr::text, a.backend_start::text "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND l.classid = %s::bigint::oid AND l.objid::bigint = (hashtext(current_database())::bigint & 4294967295)",
            [MAINTENANCE_LOCK_CLASS])
        if not row:
            return None
        return 'pid %s, user %s, application %s, client %s, connected since %s' % (
            row[0], row[1], row[2] or '-', row[3] or 'local socket', row[4])

    # --- statements with lock timeout ------------------------------------------------
    def execute(self, statement):
        """Run one changing statement. While it waits, a watcher notes who blocks it."""
        with self._watching_blockers([statement]):
            try:
                # prepare=True: the extended protocol, which runs exactly one statement (the simple one runs several).
                self.conn.execute(statement, prepare=True)
            except pg_errors.LockNotAvailable as e:
                raise LockTimeout(str(e).strip())
            except psycopg.Error as e:
                raise DbopsError('PostgreSQL refused %s: %s%s' % (
                    statement, str(e).strip(), ' (SQLSTATE %s)' % e.sqlstate if e.sqlstate else ''))

    @contextlib.contextmanager
    def _watching_blockers(self, statements=()):
        """While the block runs, note who blocks our session (pg_blocking_pids) from the monitoring
        connection; the blockers of a LockTimeout raised in the block are kept for lock_blockers().

        statements: what the block runs. When the wait ended before the watch saw a blocker (a short
        lock_timeout on a loaded machine), the blockers are read after the timeout instead: the sessions
        that still hold a lock conflicting with what one of the statements asks for (locks.py)."""
        pid = self.conn.info.backend_pid

        def poll():
            return [dict(_blocker_row(r), seen_by='pg_blocking_pids')
                    for r in self._monitor().execute(_BlockerWatcher.QUERY, [pid]).fetchall()]
        t0 = time.monotonic()
        watcher = BlockerWatcher(poll, delay=min(0.2, (self.params.get('lock_timeout') or 1) / 4)).start()
        try:
            yield
        except LockTimeout:
            self._last_blockers = watcher.stop()
            if not self._last_blockers and statements:
                self._last_blockers = self._holders_after_timeout(statements, t0)
            raise
        finally:
            watcher.stop()

    def _holders_after_timeout(self, statements, t0):
        """The sessions holding a lock that conflicts with one the statements ask for, read on our own
        connection once it is idle again (its search_path resolves the names; nothing is locked).

        Only a transaction that began before our statement was sent (monotonic time t0) can have blocked
        it: the application's queries that queued behind it got their locks when it left the queue, and
        they are not blockers."""
        if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return []
        pids = []
        try:
            for statement in statements:
                for query, params in lock_holder_queries(statement):
                    pids.extend(r[0] for r in self.conn.execute(query, params).fetchall() if r[0] not in pids)
            if not pids:
                return []
            rows = self.conn.execute(
                _BlockerWatcher.ACTIVITY + ' WHERE a.pid = ANY (%s) '
                'AND a.xact_start <= clock_timestamp() - make_interval(secs => %s) ORDER BY a.pid',
                [pids, time.monotonic() - t0]).fetchall()
        except psycopg.Error as e:
            self.blockers_unknown = 'cannot read pg_locks after the lock timeout: %s' % str(e).strip()
            return []
        return [dict(_blocker_row(r), seen_by='pg_locks') for r in rows]

    def _monitor(self):
        """The module's second connection (opened at the first lock wait, kept until close):
        it only reads pg_stat_activity / pg_blocking_pids, and takes no lock on any table."""
        if getattr(self, '_monitor_conn', None) is None:
            kw = self.conninfo()
            kw['application_name'] = '%s/blocker-watch' % APPLICATION_NAME
            self._monitor_conn = psycopg.connect(autocommit=True, **kw)
        return self._monitor_conn

    def prepare_blocker_watch(self):
        self._monitor()

    def lock_blockers(self):
        return getattr(self, '_last_blockers', [])

    def blockers_still_there(self, blockers):
        """The blockers whose session still runs the same transaction: (pid, backend_start, xact_start)
        unchanged. Read from pg_stat_activity on the monitoring connection (no lock taken)."""
        try:
            rows = self._monitor().execute(_BlockerWatcher.ACTIVITY + ' WHERE a.pid = ANY (%s)',
                                           [[b['pid'] for b in blockers]]).fetchall()
        except psycopg.Error:
            return None
        now = {tuple(b['identity']): b for b in (_blocker_row(r) for r in rows)}
        return [now[tuple(b['identity'])] for b in blockers if tuple(b['identity']) in now]


def _blocker_row(r):
    return dict(pid=r[0], user=r[1], state=r[2], transaction_start=r[3],
                query=redact_query(r[4], 'postgresql'), application=r[5] or None,
                held_s=round(float(r[6]), 1) if r[6] is not None else None,
                identity=[r[0], r[7], r[3]])


class _BlockerWatcher:  # pylint: disable=too-few-public-methods
    """The queries of the PostgreSQL blocker watch (pg_blocking_pids, then pg_stat_activity)."""

    ACTIVITY = ("SELECT a.pid, a.usename, a.state, a.xact_start::text, left(a.query, 2000), a.application_name, "
                "extract(epoch FROM clock_timestamp() - a.xact_start), a.backend_start::text "
                "FROM pg_stat_activity a")
    QUERY = ACTIVITY + " WHERE a.pid = ANY (pg_blocking_pids(%s))"


if HAS_PSYCOPG:
    class _WatchedConnection(psycopg.Connection):
        """Every wait of the connection for the server runs under its watchdog (set after connect)."""

        dbops_watchdog = None

        def wait(self, gen, *args, **kwargs):  # pylint: disable=signature-differs
            watch = self.dbops_watchdog
            if watch is None:
                return super().wait(gen, *args, **kwargs)
            if watch.tripped:
                raise watch.failure()
            try:
                with watch.waiting():
                    return super().wait(gen, *args, **kwargs)
            except psycopg.Error as e:
                if watch.tripped:
                    raise watch.failure() from e
                raise

        def close(self):
            if self.dbops_watchdog is not None:
                self.dbops_watchdog.close()
            super().close()

    class _WatchedCursor(psycopg.Cursor):
        """Names the statement the watchdog waits for (phase: query ...)."""

        def execute(self, query, params=None, **kwargs):  # pylint: disable=arguments-differ
            watch = getattr(self.connection, 'dbops_watchdog', None)
            if watch is None:
                return super().execute(query, params, **kwargs)
            before = watch.label
            try:
                text = query.as_string(self.connection) if hasattr(query, 'as_string') else str(query)
            except Exception:
                text = repr(query)
            watch.label = 'query %s' % wd.shorten(text)
            try:
                return super().execute(query, params, **kwargs)
            finally:
                watch.label = before
else:  # pragma: no cover - connect() fails with missing_required_lib first
    _WatchedConnection = _WatchedCursor = None
