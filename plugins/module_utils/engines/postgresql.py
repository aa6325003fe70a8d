# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL adapter (psycopg 3).

Quoting is psycopg.sql's; values are parameters or sql.Literal. The
connection is in autocommit mode, so each DDL statement is its own
transaction (ALTER TYPE ... ADD VALUE must run outside a transaction block
before PostgreSQL 12) and a statement that fails leaves nothing behind.
"""

from __future__ import annotations

import contextlib

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    Adapter, BlockerWatcher, DbopsError, LockTimeout, Step, did_you_mean, redact_query, requested_comment, requested_default,
)

try:
    import psycopg
    from psycopg import sql
    from psycopg import errors as pg_errors
    HAS_PSYCOPG = True
    PSYCOPG_IMPORT_ERROR = None
except ImportError as e:  # pragma: no cover - depends on the managed host
    HAS_PSYCOPG = False
    PSYCOPG_IMPORT_ERROR = e

from ansible_collections.dbops.maintenance.plugins.module_utils import watchdog as wd
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import not_null as online_not_null

# First key of the two-key advisory lock: the bytes "dbop". The second key is
# hashtext(current_database()), so the lock is per database.
MAINTENANCE_LOCK_CLASS = 0x64626F70
APPLICATION_NAME = 'dbops.maintenance'


class PostgresAdapter(Adapter):
    engine = 'postgresql'

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
        with self._watching_blockers():
            try:
                # prepare=True: the extended protocol, which runs exactly one statement (the simple one runs several).
                self.conn.execute(statement, prepare=True)
            except pg_errors.LockNotAvailable as e:
                raise LockTimeout(str(e).strip())
            except psycopg.Error as e:
                raise DbopsError('PostgreSQL refused %s: %s%s' % (
                    statement, str(e).strip(), ' (SQLSTATE %s)' % e.sqlstate if e.sqlstate else ''))

    @contextlib.contextmanager
    def _watching_blockers(self):
        """While the block runs, note who blocks our session (pg_blocking_pids) from the monitoring
        connection; the blockers of a LockTimeout raised in the block are kept for lock_blockers()."""
        pid = self.conn.info.backend_pid

        def poll():
            return [_blocker_row(r) for r in self._monitor().execute(_BlockerWatcher.QUERY, [pid]).fetchall()]
        watcher = BlockerWatcher(poll, delay=min(0.2, (self.params.get('lock_timeout') or 1) / 4)).start()
        try:
            yield
        except LockTimeout:
            self._last_blockers = watcher.stop()
            raise
        finally:
            watcher.stop()

    def _monitor(self):
        """The module's second connection (opened at the first lock wait, kept until close):
        it only reads pg_stat_activity / pg_blocking_pids, and takes no lock on any table."""
        if getattr(self, '_monitor_conn', None) is None:
            kw = self.conninfo()
            kw['application_name'] = '%s/blocker-watch' % APPLICATION_NAME
            self._monitor_conn = psycopg.connect(autocommit=True, **kw)
        return self._monitor_conn

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

    # --- names -------------------------------------------------------------------
    def current_schema(self):
        return self.fetchone('SELECT current_schema()')[0] or 'public'

    def schema_exists(self, schema):
        return bool(self.fetchone('SELECT 1 FROM pg_namespace WHERE nspname = %s', [schema]))

    def schema_names(self):
        return [r[0] for r in self.fetchall("SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_'")]

    def qualified(self, schema, name):
        return sql.Identifier(schema, name)

    def display(self, schema, name):
        return self.render(self.qualified(schema, name))

    # --- enums -----------------------------------------------------------------------
    def max_label_bytes(self):
        return int(self.fetchone('SHOW max_identifier_length')[0])

    def find_enum(self, schema, name):
        """Returns (values, None) for an enum, (None, 'kind') for another type, (None, None) if missing."""
        row = self.fetchone(
            'SELECT t.oid, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace '
            'WHERE n.nspname = %s AND t.typname = %s', [schema, name])
        if not row:
            return None, None
        if row[1] != 'e':
            return None, {'b': 'base type', 'c': 'composite type', 'd': 'domain', 'r': 'range type',
                          'm': 'multirange type', 'p': 'pseudo-type'}.get(row[1], 'type')
        values = [r[0] for r in self.fetchall(
            'SELECT enumlabel FROM pg_enum WHERE enumtypid = %s ORDER BY enumsortorder', [row[0]])]
        return values, None

    def enum_names(self):
        return [(r[0], r[1]) for r in self.fetchall(
            "SELECT n.nspname, t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
            "WHERE t.typtype = 'e' ORDER BY 1, 2")]

    def plan_enum_add(self, schema, name, values, before=None, after=None, create=False, **_ignored):
        """Plan for enum_add. Returns dict(steps, before, after, added, target)."""
        schema = schema or self.current_schema()
        target = self.display(schema, name)
        limit = self.max_label_bytes()
        for v in values:
            if not v:
                self.fail('Enum values cannot be empty strings (PostgreSQL labels are 1 to %d bytes).' % limit)
            if len(v.encode('utf-8')) > limit:
                self.fail('Enum value %r is %d bytes long; PostgreSQL labels are at most %d bytes '
                          '(max_identifier_length). Use a shorter value.' % (v, len(v.encode('utf-8')), limit))
        current, other_kind = self.find_enum(schema, name)
        if other_kind:
            self.fail('%s is a %s, not an enum type; enum_add only adds values to enum types.' % (target, other_kind))
        if current is None:
            if not self.schema_exists(schema):
                self.fail('Schema %s does not exist in database %s.%s' % (
                    sql.Identifier(schema).as_string(self.conn), self.params['database'],
                    did_you_mean(schema, self.schema_names())))
            if not create:
                enums = self.enum_names()
                candidates = [n if s == schema else '%s.%s' % (s, n) for s, n in enums]
                self.fail('Enum type %s does not exist in database %s.%s Set create: true to create it, or '
                          'check name/schema (names are case-sensitive: Prisma creates "CredentialType").'
                          % (target, self.params['database'], did_you_mean(name, candidates) or
                             (' Enum types present: %s.' % (', '.join('%s.%s' % e for e in enums) or 'none'))))
            if before or after:
                self.fail('before/after cannot be used when creating the type %s: it has no values yet.' % target)
            stmt = sql.SQL('CREATE TYPE {} AS ENUM ({})').format(
                self.qualified(schema, name), sql.SQL(', ').join(sql.Literal(v) for v in values))
            return dict(steps=[Step(self.render(stmt), 'create the enum type')], before=None,
                        after=dict(type=target, values=list(values)), added=list(values), target=target,
                        created=True)
        anchor = before or after
        if anchor is not None and anchor not in current:
            self.fail('%s %r is not a value of %s (values: %s); nothing was changed.'
                      % ('before' if before else 'after', anchor, target, ', '.join(current)))
        to_add = [v for v in values if v not in current]
        steps = []
        final = list(current)
        prev = after
        for v in to_add:
            if after is not None:
                stmt = sql.SQL('ALTER TYPE {} ADD VALUE IF NOT EXISTS {} AFTER {}').format(
                    self.qualified(schema, name), sql.Literal(v), sql.Literal(prev))
                final.insert(final.index(prev) + 1, v)
                prev = v
            elif before is not None:
                stmt = sql.SQL('ALTER TYPE {} ADD VALUE IF NOT EXISTS {} BEFORE {}').format(
                    self.qualified(schema, name), sql.Literal(v), sql.Literal(before))
                final.insert(final.index(before), v)
            else:
                stmt = sql.SQL('ALTER TYPE {} ADD VALUE IF NOT EXISTS {}').format(
                    self.qualified(schema, name), sql.Literal(v))
                final.append(v)
            steps.append(Step(self.render(stmt), 'add enum value %r' % v))
        return dict(steps=steps, before=dict(type=target, values=current), after=dict(type=target, values=final),
                    added=to_add, target=target, created=False)

    def enum_state(self, schema, name, **_ignored):
        schema = schema or self.current_schema()
        values, _kind = self.find_enum(schema, name)
        return dict(type=self.display(schema, name), values=values)

    # --- tables and columns ------------------------------------------------------------
    def find_table(self, schema, table):
        row = self.fetchone(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", [schema, table])
        return row[0] if row else None

    def relation_kind(self, schema, name):
        """'view', 'materialized view', ... for a relation that exists but is not a table; None otherwise."""
        row = self.fetchone(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", [schema, name])
        if not row:
            return None
        return {'v': 'view', 'm': 'materialized view', 'f': 'foreign table', 'i': 'index', 'S': 'sequence',
                'I': 'partitioned index', 'c': 'composite type', 't': 'TOAST table'}.get(row[0])

    def table_names(self, schema):
        return [r[0] for r in self.fetchall(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY 1", [schema])]

    def columns(self, table_oid):
        """Ordered dict-like list of the table's columns as the server describes them."""
        rows = self.fetchall(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum) "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", [table_oid])
        return [dict(name=r[0], type=r[1], nullable=r[2], default=r[3], comment=r[4]) for r in rows]

    def count_rows(self, schema, table, where_null=None):
        q = sql.SQL('SELECT count(*) FROM {}').format(self.qualified(schema, table))
        if where_null:
            q = q + sql.SQL(' WHERE {} IS NULL').format(sql.Identifier(where_null))
        return self.fetchone(q)[0]

    def probe_column(self, column, type_sql, default_sql):
        """Ask the server itself how it reads a column definition, in a transaction that is rolled back.

        Returns dict(type, default, fast_default): the server's own spelling of
        the type and default (format_type / pg_get_expr; a NULL default reads
        as None), and whether ADD COLUMN with this default is metadata-only
        (atthasmissing). The probe is an empty temporary table: the default is
        evaluated for no row, and nothing persists.
        """
        col = sql.Identifier(column)
        probe = sql.Identifier('pg_temp', 'dbops_probe')
        add = sql.SQL('ALTER TABLE {} ADD COLUMN {} ').format(probe, col) + sql.SQL(type_sql)
        if default_sql is not None:
            add = add + sql.SQL(' DEFAULT ') + sql.SQL(default_sql)
        attr_q = ("SELECT format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.atthasmissing, "
                  "d.adbin IS NOT NULL AND pg_get_expr(d.adbin, d.adrelid) ~ '^NULL(::.*)?$' "
                  "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                  "WHERE a.attrelid = 'pg_temp.dbops_probe'::regclass AND a.attname = %s")
        out = {}
        try:
            with self.conn.transaction(force_rollback=True):
                self.conn.execute(sql.SQL('CREATE TEMPORARY TABLE {} ()').format(probe))
                # prepare=True: the extended protocol runs exactly one statement, whatever the strings hold.
                self.conn.execute(add, prepare=True)
                out['type'], out['default'], has_missing, is_null = self.fetchone(attr_q, [column])
                if is_null:  # DEFAULT NULL::varchar(10) is no default at all
                    out['default'] = None
                out['fast_default'] = out['default'] is None or bool(has_missing)
        except psycopg.Error as e:
            raise DbopsError('PostgreSQL does not accept this column definition (type %r%s): %s' % (
                type_sql, ', default %r' % default_sql if default_sql is not None else '',
                str(e).strip().splitlines()[0]))
        return out

    def probe_rewrite(self, column, current_type, type_sql, using=None):
        """Whether changing the column's type rewrites the table: the probe's relfilenode changes.

        Runs on an empty temporary table with the column's current type, in a
        transaction that is rolled back.
        """
        col = sql.Identifier(column)
        probe = sql.Identifier('pg_temp', 'dbops_probe')
        node = "SELECT relfilenode FROM pg_class WHERE oid = 'pg_temp.dbops_probe'::regclass"
        try:
            with self.conn.transaction(force_rollback=True):
                self.conn.execute(sql.SQL('CREATE TEMPORARY TABLE {} ({} ').format(probe, col)
                                  + sql.SQL(current_type) + sql.SQL(')'), prepare=True)
                before = self.fetchone(node)[0]
                alter = sql.SQL('ALTER TABLE {} ALTER COLUMN {} TYPE ').format(probe, col) + sql.SQL(type_sql)
                if using:
                    alter = alter + sql.SQL(' USING ') + sql.SQL(using)
                self.conn.execute(alter, prepare=True)
                return self.fetchone(node)[0] != before
        except psycopg.Error as e:
            hint = '' if using else ' Give a using expression that converts the values (using: ...).'
            raise DbopsError('PostgreSQL cannot change the column from %s to %s%s: %s.%s Nothing was changed.' % (
                current_type, type_sql, ' using %r' % using if using else '',
                str(e).strip().splitlines()[0], hint))

    def plan_column(self, spec):
        """Plan for column_ensure. spec: the module's options. Returns dict(steps, before, after, ...)."""
        schema = spec.get('schema') or self.current_schema()
        table, column = spec['table'], spec['column']
        target = self.display(schema, table)
        oid = self.find_table(schema, table)
        if oid is None:
            kind = self.relation_kind(schema, table)
            if kind:
                self.fail('%s is a %s, not a table; column_ensure changes the columns of tables only (change the %s\'s '
                          'definition instead). Nothing was changed.' % (target, kind, kind))
            if not self.schema_exists(schema):
                self.fail('Schema %s does not exist.%s' % (schema, did_you_mean(schema, self.schema_names())))
            self.fail('Table %s does not exist in database %s.%s' % (
                target, self.params['database'], did_you_mean(table, self.table_names(schema))))
        cols = {c['name']: c for c in self.columns(oid)}
        current = cols.get(column)
        qtable, qcol = self.qualified(schema, table), sql.Identifier(column)
        res = dict(target='%s.%s' % (target, sql.Identifier(column).as_string(self.conn)), before=current)

        if spec['state'] == 'absent':
            if current is None:
                return dict(res, steps=[], after=None)
            if not spec.get('allow_drop'):
                self.fail('Column %s exists; dropping it deletes its data for good. Set allow_drop: true to drop it '
                          '(after a backup). Nothing was changed.' % res['target'])
            stmt = sql.SQL('ALTER TABLE {} DROP COLUMN {}').format(qtable, qcol)
            return dict(res, steps=[Step(self.render(stmt), 'drop the column')], after=None)

        managed_default, default_expr = requested_default(spec)
        managed_comment, comment = requested_comment(spec)
        want = self.probe_column(column, spec['type'], default_expr)
        desired = dict(name=column, type=want['type'], nullable=spec['nullable'],
                       default=want['default'] if managed_default else (current['default'] if current else None),
                       comment=comment if managed_comment else (current['comment'] if current else None))
        comment_stmt = sql.SQL('COMMENT ON COLUMN {} IS {}').format(
            sql.Identifier(schema, table, column), sql.Literal(desired['comment']))
        steps = []
        if current is None:
            if not spec['nullable'] and desired['default'] is None:
                rows = self.count_rows(schema, table)
                if rows:
                    self.fail('Cannot add %s as NOT NULL without a default: %s has %d row(s), which would have no '
                              'value. Give a default (default: ...), or add it nullable, backfill, then set '
                              'nullable: false. Nothing was changed.' % (res['target'], target, rows), row_count=rows)
            if not want['fast_default'] and not spec.get('allow_rewrite'):
                self.fail('The default %r is volatile: adding %s with it rewrites every row of %s under an '
                          'ACCESS EXCLUSIVE lock. Set allow_rewrite: true to accept that, or add the column without '
                          'a default and backfill in batches. Nothing was changed.'
                          % (default_expr, res['target'], target))
            stmt = sql.SQL('ALTER TABLE {} ADD COLUMN {} ').format(qtable, qcol) + sql.SQL(spec['type'])
            if not spec['nullable']:
                stmt = stmt + sql.SQL(' NOT NULL')
            if desired['default'] is not None:
                stmt = stmt + sql.SQL(' DEFAULT ') + sql.SQL(default_expr)
            steps.append(Step(self.render(stmt), 'add the column'))
            if desired['comment'] is not None:
                steps.append(Step(self.render(comment_stmt), 'set the comment'))
            return dict(res, steps=steps, after=desired)

        differences = [k for k in ('type', 'nullable', 'default', 'comment') if current[k] != desired[k]]
        if not differences:
            return dict(res, steps=[], after=current)
        if not spec.get('alter'):
            return dict(res, steps=[], after=desired, differences=differences, refused=True)
        parts = []
        if 'type' in differences:
            if self.probe_rewrite(column, current['type'], spec['type'], spec.get('using')) \
                    and not spec.get('allow_rewrite'):
                self.fail('Changing %s from %s to %s rewrites the whole table %s under an ACCESS EXCLUSIVE lock. '
                          'Set allow_rewrite: true to accept that (in a maintenance window). Nothing was changed.'
                          % (res['target'], current['type'], want['type'], target))
            part = sql.SQL('ALTER COLUMN {} TYPE ').format(qcol) + sql.SQL(spec['type'])
            if spec.get('using'):
                part = part + sql.SQL(' USING ') + sql.SQL(spec['using'])
            parts.append(part)
        if 'default' in differences:
            if desired['default'] is None:
                parts.append(sql.SQL('ALTER COLUMN {} DROP DEFAULT').format(qcol))
            else:
                parts.append(sql.SQL('ALTER COLUMN {} SET DEFAULT ').format(qcol) + sql.SQL(default_expr))
        not_null = []
        if 'nullable' in differences:
            if desired['nullable']:
                parts.append(sql.SQL('ALTER COLUMN {} DROP NOT NULL').format(qcol))
            else:
                nulls = self.count_rows(schema, table, where_null=column)
                if nulls:
                    self.fail('Cannot make %s NOT NULL: %d row(s) have NULL in it. Backfill them first '
                              '(UPDATE ... SET %s = ... WHERE %s IS NULL, in batches). Nothing was changed.'
                              % (res['target'], nulls, column, column), null_count=nulls)
                # PostgreSQL 12+: CHECK NOT VALID -> VALIDATE -> SET NOT NULL -> drop the check (online_ddl/not_null.py)
                not_null = online_not_null.steps(self, schema, table, column)
                if not not_null:
                    parts.append(sql.SQL('ALTER COLUMN {} SET NOT NULL').format(qcol))
        if parts:
            stmt = sql.SQL('ALTER TABLE {} ').format(qtable) + sql.SQL(', ').join(parts)
            steps.append(Step(self.render(stmt), 'alter the column: %s' % ', '.join(
                d for d in differences if d != 'comment')))
        steps.extend(not_null)
        if 'comment' in differences:
            steps.append(Step(self.render(comment_stmt), 'set the comment'))
        return dict(res, steps=steps, after=desired, differences=differences)

    def read_column(self, spec):
        schema = spec.get('schema') or self.current_schema()
        oid = self.find_table(schema, spec['table'])
        if oid is None:
            return None
        return {c['name']: c for c in self.columns(oid)}.get(spec['column'])

    # --- migration history (migration_status / migration_resolve) ---
    def mig_split(self, table):
        if '.' in table:
            schema, name = table.split('.', 1)
            return schema, name
        return None, table

    def mig_ident(self, name):
        """A table may be given as schema.table; a column never has a dot."""
        schema, table = self.mig_split(name)
        return self.render(sql.Identifier(schema, table) if schema else sql.Identifier(table))

    bool_literals = ('true', 'false')

    def mig_bytes_literal(self, value):
        return "'\\x%s'::bytea" % value.hex()

    def mig_text_literal(self, text):
        return self.render(sql.Literal(text))

    def mig_columns(self, table):
        schema, name = self.mig_split(table)
        rows = self.fetchall(
            'SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid '
            'JOIN pg_namespace n ON n.oid = c.relnamespace '
            "WHERE c.relname = %s AND n.nspname = COALESCE(%s, current_schema()) AND c.relkind IN ('r', 'p') "
            'AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum', [name, schema])
        if not rows:
            return None
        return [r[0].lower() for r in rows]

    def mig_fetch(self, query):
        rows = self.fetchall(query)
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]

    def mig_run_transaction(self, statements):
        try:
            with self._watching_blockers():
                try:
                    with self.conn.transaction():
                        for statement in statements:
                            self.conn.execute(statement)
                except pg_errors.LockNotAvailable as e:
                    raise LockTimeout(str(e).strip())
        except psycopg.Error as e:
            raise DbopsError('PostgreSQL refused %s: %s%s. The transaction was rolled back: nothing was changed.' % (
                '; '.join(statements), str(e).strip(), ' (SQLSTATE %s)' % e.sqlstate if e.sqlstate else ''))

    # --- verification (db_verify) ---
    # Read-only helpers of db_verify. Nothing here writes: type normalisation and the operator's
    # queries run in a READ ONLY transaction that is rolled back (so they also work on a hot standby).
    def verify_tables(self):
        """[(schema, table)] of every table outside the system schemas."""
        return [(r[0], r[1]) for r in self.fetchall(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname !~ '^pg_' "
            "AND n.nspname <> 'information_schema' ORDER BY 1, 2")]

    def verify_columns(self, schema, table):
        oid = self.find_table(schema, table)
        return {c['name']: c for c in self.columns(oid)} if oid else {}

    def verify_normalise_type(self, type_sql):
        """The server's own spelling of a type (format_type), read from the result description of
        SELECT NULL::<type> in a rolled-back READ ONLY transaction: no temporary table, nothing written."""
        query = sql.SQL('SELECT NULL::') + sql.SQL(type_sql)
        try:
            with self.conn.transaction(force_rollback=True):
                self.conn.execute('SET TRANSACTION READ ONLY')
                # prepare=True: the extended protocol runs exactly one statement, whatever the string holds.
                cur = self.conn.execute(query, prepare=True)
                oid, mod = cur.pgresult.ftype(0), cur.pgresult.fmod(0)
                return self.fetchone('SELECT format_type(%s::oid, %s)', [oid, mod])[0]
        except psycopg.Error as e:
            raise DbopsError('PostgreSQL does not accept the type %r: %s' % (
                type_sql, (str(e).strip().splitlines() or [''])[0]))

    def verify_count(self, schema, table):
        return self.count_rows(schema, table)

    def verify_query(self, text):
        """First row of the operator's query, once it is proven to only read.

        sqlcheck.readonly_query parses it with the server's own parser (pglast): one SELECT, no INTO, no FOR
        UPDATE/SHARE, no data-modifying WITH; verify_calls then resolves every function, operator and cast type
        it names in this database's catalog. It runs as one statement (extended protocol) in a READ ONLY
        transaction that is rolled back: the second layer.
        """
        calls = sqlcheck.readonly_query(text, 'postgresql')
        self.verify_calls(calls)
        try:
            with self.conn.transaction(force_rollback=True):
                self.conn.execute('SET TRANSACTION READ ONLY')
                cur = self.conn.execute(sql.SQL(text), prepare=True)
                return cur.fetchone() if cur.description else None
        except psycopg.Error as e:
            raise DbopsError('The query failed: %s%s. It runs in a READ ONLY transaction, as one statement: it '
                             'cannot change data.' % ((str(e).strip().splitlines() or [''])[0],
                                                      ' (SQLSTATE %s)' % e.sqlstate if e.sqlstate else ''))

    # Every function of that name the call could resolve to (in the schema it names, or on the search path).
    VERIFY_FUNCTIONS = (
        "SELECT n.nspname, p.provolatile, p.proname, l.lanname FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang "
        "WHERE p.proname = %(name)s AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(true)) "
        "ELSE n.nspname = %(schema)s END")
    VERIFY_OPERATORS = (
        "SELECT n.nspname, p.provolatile, p.proname, l.lanname FROM pg_operator o "
        "JOIN pg_namespace n ON n.oid = o.oprnamespace JOIN pg_proc p ON p.oid = o.oprcode "
        "JOIN pg_language l ON l.oid = p.prolang WHERE o.oprname = %(name)s AND CASE WHEN %(schema)s::text IS NULL "
        "THEN n.nspname = ANY (current_schemas(true)) ELSE n.nspname = %(schema)s END")
    # A cast to a type runs its input function and any cast function into it; a domain runs its CHECKs.
    VERIFY_TYPES = (
        "SELECT t.typname, EXISTS (SELECT 1 FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang "
        "JOIN pg_namespace pn ON pn.oid = p.pronamespace WHERE (p.oid IN (t.typinput, t.typoutput) "
        "OR p.oid IN (SELECT c.castfunc FROM pg_cast c WHERE c.casttarget = t.oid)) "
        "AND pn.nspname <> 'pg_catalog' AND l.lanname NOT IN ('c', 'internal')), "
        "EXISTS (SELECT 1 FROM pg_constraint k WHERE k.contypid = t.oid) "
        "FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typname = %(name)s "
        "AND CASE WHEN %(schema)s::text IS NULL THEN n.nspname = ANY (current_schemas(true)) "
        "ELSE n.nspname = %(schema)s END")

    def verify_calls(self, calls):
        """Refuse (nothing run) unless every function/operator the query names is immutable or stable, not on
        sqlcheck's deny list, and built in (pg_catalog) or compiled code of an extension (language C or internal,
        which only a superuser can install: citext's = operator, for one), whatever overload the call resolves
        to; and every type it casts to is built in. Resolving by name and checking every candidate overload is
        exact without guessing the argument types: if any candidate could act, the query is refused. Functions
        written in SQL, PL/pgSQL or another procedural language outside pg_catalog are user code: refused."""
        refuse = sqlcheck.SqlRefused
        tail = (' db_verify runs only immutable or stable functions that are built in or compiled extension code. %s'
                % sqlcheck.NOTHING)
        for kind, query, items in (('function', self.VERIFY_FUNCTIONS, calls['functions']),
                                   ('operator', self.VERIFY_OPERATORS, calls['operators'])):
            for schema, name in items:
                label = '%s%s' % ('%s.' % schema if schema else '', name)
                rows = self.fetchall(query, dict(name=name, schema=schema))
                if not rows:
                    raise refuse('The query calls the %s %s, which does not exist here (on the search path).%s'
                                 % (kind, label, tail))
                for nsp, volatility, proname, language in rows:
                    if nsp != 'pg_catalog' and language not in ('c', 'internal'):
                        raise refuse('The query calls the %s %s, and %s.%s is user-defined (in %s).%s'
                                     % (kind, label, nsp, name, language, tail))
                    if volatility == 'v' or sqlcheck.pg_function_denied(proname):
                        raise refuse('The query calls the %s %s (%s), which is %s.%s' % (
                            kind, label, proname, 'volatile: it may act, not only read' if volatility == 'v'
                            else 'on the deny list of functions that act (files, sessions, settings, locks, waits)',
                            tail))
        for schema, name in calls.get('types', ()):
            for _typname, user_code, domain_checks in self.fetchall(self.VERIFY_TYPES, dict(name=name, schema=schema)):
                if user_code or domain_checks:
                    raise refuse('The query casts to the type %s, whose %s user code. %s' % (
                        name, 'input or cast functions are' if user_code else 'domain CHECK constraints may call',
                        sqlcheck.NOTHING))


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
