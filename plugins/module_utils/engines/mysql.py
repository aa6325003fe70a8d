# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL 8 and MariaDB 10.5+ adapter (PyMySQL).

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
import uuid

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    Adapter, BlockerWatcher, DbopsError, LockTimeout, Step, Unsupported, did_you_mean, redact_query, requested_comment,
    requested_default,
)

try:
    import pymysql
    HAS_PYMYSQL = True
    PYMYSQL_IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - depends on the managed host
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

MAX_ENUM_VALUE_CHARS = 255
MAX_ENUM_VALUES = 65535


def quote_ident(name):
    return '`%s`' % name.replace('`', '``')


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


class MysqlAdapter(Adapter):
    engine = 'mysql'

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
    # with an InnoDB transaction open for at least the whole wait (INNODB_TRX), read after the
    # timeout: they hold the metadata locks of every table they touched, but some of them may not
    # touch ours, and a blocker whose default database is another one is not seen (the module then
    # pauses instead of watching).
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
        """While the block runs and waits, note the metadata-lock holders (performance_schema); on a
        lock timeout without performance_schema, list the open transactions (INNODB_TRX) instead."""
        watcher = None
        if getattr(self, '_mdl_on', None) is not False:
            watcher = BlockerWatcher(lambda: self._mdl_holders() if self.metadata_locks_on() else None, delay=0.2).start()
        try:
            yield
        except LockTimeout:
            self._last_blockers = watcher.stop() if watcher is not None else []
            if not self._last_blockers and not self.metadata_locks_on():
                # INNODB_TRX is a cache that the server refreshes only when nobody has read it for 0.1 s (any
                # session: on a busy server it can be stale for longer): read it up to three times.
                for _attempt in range(3):
                    self._last_blockers = self._trx_holders()
                    if self._last_blockers:
                        break
            raise
        finally:
            if watcher is not None:
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

    def _trx_holders(self):
        pause = getattr(self, '_trx_read_at', 0.0) + self.TRX_CACHE_IDLE - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        try:
            # A transaction that held the lock for the whole wait is at least lock_wait_timeout old
            # (trx_started has whole seconds: one second of slack).
            age = max(0, int(math.ceil(self.params.get('lock_timeout') or 1)) - 1)
            return [self._blocker(r, 'innodb_trx')
                    for r in self._monitor_rows(self.TRX_HOLDERS, [self.conn.thread_id(), age])]
        except pymysql.MySQLError as e:
            self.blockers_unknown = 'cannot read INNODB_TRX: %s' % (e.args[1] if len(e.args) > 1 else e)
            return []
        finally:
            self._trx_read_at = time.monotonic()

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
    def enum_state(self, table, column, **_ignored):
        line = self.show_create_line(table, column)
        head = '%s enum(' % quote_ident(column)
        values, _raw, _end = parse_quoted_list(line, len(head))
        return dict(column='%s.%s' % (quote_ident(table), quote_ident(column)), values=values, definition=line)

    def plan_enum_add(self, table, column, values, before=None, after=None, **_ignored):
        self.require_table(table)
        row = self.require_column(table, column)
        target = '%s.%s' % (quote_ident(table), quote_ident(column))
        if row[6] != 'enum':
            self.fail('Column %s is %s, not an ENUM; enum_add changes ENUM columns only.' % (target, row[1]))
        for v in values:
            if len(v) > MAX_ENUM_VALUE_CHARS:
                self.fail('Enum value %r is %d characters long; MySQL/MariaDB ENUM values are at most %d characters.'
                          % (v[:40] + '...', len(v), MAX_ENUM_VALUE_CHARS))
        state = self.enum_state(table, column)
        current, line = state['values'], state['definition']
        anchor = before or after
        if anchor is not None and anchor not in current:
            self.fail('%s %r is not a value of %s (values: %s); nothing was changed.'
                      % ('before' if before else 'after', anchor, target, ', '.join(current)))
        to_add = [v for v in values if v not in current]
        result = dict(before=state, target=target, added=to_add, created=False)
        if not to_add:
            return dict(result, steps=[], after=state)
        final = list(current)
        if after is not None:
            pos = final.index(after) + 1
        elif before is not None:
            pos = final.index(before)
        else:
            pos = len(final)
        final[pos:pos] = to_add
        if len(final) > MAX_ENUM_VALUES:
            self.fail('An ENUM has at most %d values; this would make %d.' % (MAX_ENUM_VALUES, len(final)))
        head = '%s enum(' % quote_ident(column)
        # Existing values keep their literal exactly as SHOW CREATE TABLE wrote it.
        old_values, old_raw, end = parse_quoted_list(line, len(head))
        written = dict(zip(old_values, old_raw))
        new_line = head + ','.join(written.get(v) or self.literal(v) for v in final) + ')' + line[end:]
        base = 'ALTER TABLE %s MODIFY COLUMN %s' % (quote_ident(table), new_line)
        # Appending within the same storage size (1 byte up to 255 values) only changes metadata.
        instant = pos == len(current) and (len(final) <= 255 or len(current) > 255)
        copy = Step(base + ', ALGORITHM=COPY', 'redefine the ENUM by copying the table', requires='allow_copy')
        if instant:
            steps = [Step(base + ', ALGORITHM=INSTANT', 'append ENUM values (metadata only)', alternative=copy)]
        else:
            if not self.params.get('allow_copy'):
                self.fail('Inserting values %s of %s (not at the end, or past 255 values) makes the server copy the '
                          'whole table, blocking writes while it copies. Set allow_copy: true to accept that, or '
                          'append at the end instead. Nothing was changed.'
                          % ('in the middle' if pos != len(current) else 'past 255 values', target))
            steps = [copy]
        after_state = dict(state, values=final, definition=new_line)
        return dict(result, steps=steps, after=after_state)

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

    def probe_column(self, spec, charset=None):
        """Let the server normalise the requested definition on a temporary table that is dropped at once.

        charset: a table's (character set, collation) from table_charset(); the
        probe then reads a string type exactly as that table would.
        """
        probe = 'dbops_probe_%s' % uuid.uuid4().hex[:12]
        definition = self.definition(spec['type'], spec['nullable'], spec.get('default'), spec.get('comment'),
                                     collation=spec.get('collation'))
        options = ''
        if charset and charset[0]:
            options = ' DEFAULT CHARSET=%s COLLATE=%s' % charset
        try:
            self.execute('CREATE TEMPORARY TABLE %s (%s %s)%s' % (
                quote_ident(probe), quote_ident(spec['column']), definition, options))
        except DbopsError as e:
            raise DbopsError('The server does not accept this column definition (%s): %s' % (definition, e))
        try:
            return self.show_columns(probe)[spec['column']]
        finally:
            self.execute('DROP TEMPORARY TABLE IF EXISTS %s' % quote_ident(probe))

    def definition(self, type_sql, nullable, default, comment, extra=None, collation=None):
        """A column definition for ADD/MODIFY COLUMN. extra: the column's current Extra, whose
        AUTO_INCREMENT and ON UPDATE survive a MODIFY."""
        text = type_sql
        if collation:
            text += ' COLLATE %s' % collation
        text += ' NULL' if nullable else ' NOT NULL'
        if default is not None:
            text += ' DEFAULT %s' % default
        lowered = (extra or '').lower()
        if 'auto_increment' in lowered:
            text += ' AUTO_INCREMENT'
        if 'on update' in lowered:
            text += ' ' + extra[lowered.index('on update'):]
        if comment:
            text += ' COMMENT %s' % self.literal(comment)
        return text

    def require_one_statement_protocol(self):
        """The session must not have CLIENT.MULTI_STATEMENTS: then one execute can only ever be one statement."""
        if self.conn.client_flag & pymysql.constants.CLIENT.MULTI_STATEMENTS:
            raise DbopsError('The MySQL connection allows several statements per call (CLIENT.MULTI_STATEMENTS); '
                             'dbops.maintenance never runs an SQL-valued option on such a connection. Nothing was run.')

    def plan_column(self, spec):
        table, column = spec['table'], spec['column']
        self.require_one_statement_protocol()
        self.require_table(table)
        current = self.show_columns(table).get(column)
        target = '%s.%s' % (quote_ident(table), quote_ident(column))
        res = dict(target=target, before=current)
        qt = quote_ident(table)
        if spec['state'] == 'absent':
            if current is None:
                return dict(res, steps=[], after=None)
            if not spec.get('allow_drop'):
                self.fail('Column %s exists; dropping it deletes its data for good. Set allow_drop: true to drop it '
                          '(after a backup). Nothing was changed.' % target)
            base = 'ALTER TABLE %s DROP COLUMN %s' % (qt, quote_ident(column))
            return dict(res, after=None, steps=[self.algorithm_steps(base, 'drop the column')])

        managed_default, default_expr = requested_default(spec)
        managed_comment, comment = requested_comment(spec)
        charset = self.table_charset(table)
        if current is None:
            want = self.probe_column(dict(spec, default=default_expr, comment=comment), charset)
            if not spec['nullable'] and default_expr is None:
                rows_n = self.fetchone('SELECT COUNT(*) FROM %s' % qt)[0]
                if rows_n:
                    self.fail('Cannot add %s as NOT NULL without a default: %s has %d row(s); MySQL/MariaDB would '
                              'silently fill them with zero values (0, \'\', 0000-00-00). Give a default '
                              '(default: ...), or add it nullable, backfill, then set nullable: false. '
                              'Nothing was changed.' % (target, qt, rows_n), row_count=rows_n)
            base = 'ALTER TABLE %s ADD COLUMN %s %s' % (
                qt, quote_ident(column), self.definition(spec['type'], spec['nullable'], default_expr, comment))
            return dict(res, after=want, steps=[self.algorithm_steps(base, 'add the column')])

        extra = (current['extra'] or '').lower()
        if 'generated' in extra or 'virtual' in extra or 'persistent' in extra:
            self.fail('%s is a generated column (%s); column_ensure does not change generated columns.'
                      % (target, current['extra']))
        # What the column would be: unmanaged attributes (default, comment, collation) keep their current values.
        want_spec = dict(spec, default=default_expr if managed_default else
                         (self.default_as_sql(table, column) if current['default'] is not None else None),
                         comment=comment if managed_comment else current['comment'])
        want = self.probe_column(want_spec, charset)
        table_collation = charset[1]
        if want['collation'] and current['collation'] and want['collation'] == table_collation:
            # The type names no collation of its own: the column keeps the one it has
            # (said explicitly in the MODIFY only where it is not the table's default).
            want['collation'] = current['collation']
            if current['collation'] != table_collation:
                want_spec['collation'] = current['collation']
        want['extra'] = current['extra']
        differences = [k for k in ('type', 'nullable', 'default', 'comment', 'collation') if current[k] != want[k]]
        if not differences:
            return dict(res, steps=[], after=current)
        if not spec.get('alter'):
            return dict(res, steps=[], after=want, differences=differences, refused=True)
        if 'nullable' in differences and not want['nullable']:
            nulls = self.fetchone('SELECT COUNT(*) FROM %s WHERE %s IS NULL' % (qt, quote_ident(column)))[0]
            if nulls:
                self.fail('Cannot make %s NOT NULL: %d row(s) have NULL in it. Backfill them first '
                          '(UPDATE ... SET %s = ... WHERE %s IS NULL, in batches). Nothing was changed.'
                          % (target, nulls, column, column), null_count=nulls)
        base = 'ALTER TABLE %s MODIFY COLUMN %s %s' % (qt, quote_ident(column), self.definition(
            spec['type'], spec['nullable'], want_spec['default'], want_spec['comment'], current['extra'],
            collation=want_spec.get('collation')))
        return dict(res, after=want, differences=differences,
                    steps=[self.algorithm_steps(base, 'alter the column: %s' % ', '.join(differences))])

    def default_as_sql(self, table, column):
        """The current default as an SQL expression (MariaDB stores it that way; MySQL stores the value)."""
        row = {r[0]: r for r in self.column_rows(table)}[column]
        default, extra = row[3], row[5] or ''
        if self.features['column_default_is_sql'] or default is None:
            return default
        if 'DEFAULT_GENERATED' in extra:
            return '(%s)' % default
        return self.literal(default)

    def algorithm_steps(self, base, why):
        """INSTANT, else INPLACE without locking writes, else COPY only with allow_rewrite."""
        copy = Step(base + ', ALGORITHM=COPY', why + ' (copying the table)', requires='allow_rewrite')
        inplace = Step(base + ', ALGORITHM=INPLACE, LOCK=NONE', why + ' (in place)', alternative=copy)
        return Step(base + ', ALGORITHM=INSTANT', why + ' (metadata only)', alternative=inplace)

    def read_column(self, spec):
        return self.show_columns(spec['table']).get(spec['column'])

    # --- migration history (migration_status / migration_resolve) ---
    def mig_ident(self, name):
        return quote_ident(name)

    def mig_text_literal(self, text):
        return self.conn.escape(text)

    def mig_columns(self, table):
        rows = self.fetchall(
            'SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() '
            'AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION', [table])
        if not rows:
            return None
        return [r[0].lower() for r in rows]

    def mig_fetch(self, query):
        return self.fetchall(query)

    def mig_run_transaction(self, statements):
        done = []
        with self._watching_blockers():
            self._mig_run_transaction(statements, done)

    def _mig_run_transaction(self, statements, done):
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

    # --- verification (db_verify) ---
    # Read-only helpers of db_verify.
    def verify_tables(self):
        return [(None, t) for t in sorted(self.table_names())]

    def verify_columns(self, schema, table):
        return self.show_columns(table)

    def verify_normalise_type(self, type_sql):
        """The server's spelling of a type: probe_column's session-private temporary table, dropped at once."""
        return self.probe_column(dict(column='c', type=type_sql, nullable=True, default=None, comment=None))['type']

    def verify_count(self, schema, table):
        return self.fetchone('SELECT COUNT(*) FROM %s' % quote_ident(table))[0]

    def verify_query(self, text):
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
