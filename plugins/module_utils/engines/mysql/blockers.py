# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL / MariaDB lock blockers: who holds what our statement waits for (the blocker watch during a lock
wait, the read after a lock timeout, and the check between retries that they are still there)."""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import re
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import BlockerWatcher, LockTimeout
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import pymysql
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.redact import redact_query

# SHOW ENGINE INNODB STATUS, section TRANSACTIONS (lock0lock.cc lock_trx_print_wait_and_mvcc_state /
# trx_print_low): "---TRANSACTION <id>, ACTIVE [(PREPARED) ]<n> sec[ <state>]" then, on a following line,
# "MySQL thread id <n>, ..." (MariaDB: "MariaDB thread id <n>, ...").
_TRX_LINE = re.compile(r'^---TRANSACTION [^,]*, ACTIVE (?:\(PREPARED\) )?(\d+) sec')
_THREAD_LINE = re.compile(r'^(?:MySQL|MariaDB) thread id (\d+),')


def innodb_status_transactions(text):
    """{thread id: seconds active} of the active transactions listed in SHOW ENGINE INNODB STATUS."""
    found, secs = {}, None
    for line in (text or '').splitlines():
        if line.startswith('---TRANSACTION'):
            m = _TRX_LINE.match(line)
            secs = int(m.group(1)) if m else None
            continue
        m = _THREAD_LINE.match(line)
        if m and secs is not None:
            found.setdefault(int(m.group(1)), secs)
            secs = None
    return found


def _same_transaction(a, b):
    """The same session in the same transaction: same id, and a start within one second (the status read gives
    the start as now minus whole seconds active, INNODB_TRX as a whole-second time)."""
    if a['pid'] != b['pid']:
        return False
    if a['transaction_start'] == b['transaction_start']:
        return True
    try:
        ta, tb = (datetime.datetime.strptime(str(x['transaction_start'])[:19], '%Y-%m-%d %H:%M:%S') for x in (a, b))
    except (TypeError, ValueError):
        return False
    return abs((ta - tb).total_seconds()) <= 1


class MysqlBlockers:
    """The blocker watch of the MySQL/MariaDB adapter (a mixin: MysqlConnection runs the statements)."""

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
                # Read the transactions again (each read proves INNODB_TRX fresh or reads SHOW ENGINE INNODB STATUS,
                # see _trx_holders), for up to TRX_READ_FOR seconds while a read finds nothing and could not be
                # proven complete (an error, or the status read's whole seconds).
                until = time.monotonic() + self.TRX_READ_FOR
                while True:
                    self._last_blockers = self._trx_holders()
                    if self._last_blockers or getattr(self, '_trx_how', None) == 'innodb_trx' \
                            or time.monotonic() >= until:
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

    # information_schema.INNODB_TRX is served from a cache that InnoDB refreshes only when nobody has read it
    # for 0.1 s (trx0i_s.cc: can_cache_be_updated, CACHE_MIN_IDLE_TIME): a session that reads it more often than
    # that (a monitoring agent, another module's watch on the same server) keeps it stale for as long as it reads,
    # and a blocker whose transaction began after the last refresh is not in it. So each read proves the cache
    # fresh: it runs inside a transaction of its own (a consistent snapshot, which takes no metadata lock) and
    # carries a nonce; only a cache filled during this read lists our own transaction with this read's text.
    # A stale cache is not used: the transactions are then read from SHOW ENGINE INNODB STATUS, which is not
    # cached (and is only read then: it holds InnoDB's lock-system latch while it prints).
    TRX_CACHE_IDLE = 0.15
    TRX_STATUS_IDLE = 1.0  # SHOW ENGINE INNODB STATUS at most once a second (it holds the lock-system latch)
    TRX_READ_FOR = 1.5
    FRESHNESS_TAG = 'dbops.maintenance freshness'
    TRX_ROWS = (
        "SELECT /* " + FRESHNESS_TAG + " %s */ p.ID, p.USER, p.COMMAND, CAST(t.trx_started AS CHAR), "
        "LEFT(COALESCE(p.INFO, t.trx_query), 2000), TIMESTAMPDIFF(SECOND, t.trx_started, NOW()), "
        "p.DB <=> DATABASE(), COALESCE(p.STATE, ''), t.trx_query "
        "FROM information_schema.INNODB_TRX t JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id")
    PROCESS_ROWS = (
        "SELECT p.ID, p.USER, p.COMMAND, CAST(NOW() AS CHAR), LEFT(p.INFO, 2000), "
        "p.DB <=> DATABASE(), COALESCE(p.STATE, '') FROM information_schema.PROCESSLIST p WHERE p.ID IN %s")
    MAIN_STATE = "SELECT COALESCE(STATE, '') FROM information_schema.PROCESSLIST WHERE ID = %s"

    def _trx_holders(self, age=None, waiting=False):
        """Sessions of this database, other than ours, that are not waiting themselves and have had an InnoDB
        transaction open for at least `age` seconds (default: one that held the lock for the whole wait is at
        least lock_wait_timeout old; the server counts whole seconds: one second of slack). waiting: read only
        while our own session waits for a metadata lock (a long statement that runs, not waits, costs no read)."""
        pause = getattr(self, '_trx_read_at', 0.0) + getattr(self, '_trx_idle', self.TRX_CACHE_IDLE) - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        main = self.conn.thread_id()
        try:
            if age is None:
                age = max(0, int(math.ceil(self.params.get('lock_timeout') or 1)) - 1)
            if waiting:
                state = self._monitor_rows(self.MAIN_STATE, [main])
                if not state or not (state[0][0].startswith('Waiting for') and 'metadata lock' in state[0][0]):
                    return []
            self._trx_how = None
            rows, how = self._innodb_trx_rows(), 'innodb_trx'
            self._trx_idle = self.TRX_CACHE_IDLE
            if rows is None:
                rows, how = self._innodb_status_rows(), 'innodb_status'
                self._trx_idle = self.TRX_STATUS_IDLE
            me = self._monitor().thread_id()
            self._trx_how = how
            return [self._blocker(r, how) for r in rows
                    if r[0] not in (main, me) and r[6] and not r[7].startswith('Waiting for')
                    and r[5] is not None and int(r[5]) >= age
                    and self.FRESHNESS_TAG not in (r[4] or '')]  # another run's watch, reading INNODB_TRX
        except pymysql.MySQLError as e:
            self.blockers_unknown = 'cannot read the InnoDB transactions: %s' % (e.args[1] if len(e.args) > 1 else e)
            return []
        finally:
            self._trx_read_at = time.monotonic()

    def _innodb_trx_rows(self):
        """INNODB_TRX's rows, or None when the cache was not refreshed by this read (see above)."""
        nonce = os.urandom(8).hex()
        mon = self._monitor()
        with mon.cursor() as cur:
            cur.execute('START TRANSACTION WITH CONSISTENT SNAPSHOT')
            try:
                cur.execute(self.TRX_ROWS % nonce)
                rows = cur.fetchall()
            finally:
                cur.execute('COMMIT')
        me = mon.thread_id()
        if not any(r[0] == me and r[8] and nonce in r[8] for r in rows):
            return None
        return rows

    def _innodb_status_rows(self):
        """The same rows from SHOW ENGINE INNODB STATUS (its transaction list, with each session's age)."""
        text = self._monitor_rows('SHOW ENGINE INNODB STATUS', None)
        active = innodb_status_transactions(text[0][2] if text and len(text[0]) > 2 else '')
        if not active:
            return []
        rows = []
        # one read of the sessions; the start is the server's now minus the seconds active (as INNODB_TRX has it)
        for r in self._monitor_rows(self.PROCESS_ROWS, [tuple(active)]):
            secs = active[int(r[0])]
            now = datetime.datetime.strptime(str(r[3])[:19], '%Y-%m-%d %H:%M:%S')
            start = (now - datetime.timedelta(seconds=secs)).strftime('%Y-%m-%d %H:%M:%S')
            rows.append((r[0], r[1], r[2], start, r[4], secs, r[5], r[6]))
        return rows

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
            now = self._trx_holders()
        except pymysql.MySQLError:
            return None
        if all(any(_same_transaction(b, n) for n in now) for b in blockers):
            return blockers
        return []
