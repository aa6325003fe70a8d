# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL/MariaDB dump/restore tooling: mariadb-dump or mysqldump, and the mariadb/mysql client.

Credentials reach the tools through a 0600 option file in a private 0700
directory, given as --defaults-file (the first argument, as the tools require)
and removed when the module ends. The option file first includes the
config_file (~/.my.cnf) when it exists, so its settings apply unless the
module's own options override them. Nothing secret is ever on a command line.
"""

from __future__ import annotations

import os
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, did_you_mean
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.base import (
    ModuleView, Tooling, fail_at, marker_text,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.common import COMPRESSION_EXT, Interrupted, iso
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.files import PrivateDir
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.pipeline import Pipeline, Stage
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.tools import (
    VersionProbe, compressor_argv, find_tool, tool_version,
)

DUMP_OPTIONS = ['--single-transaction', '--quick', '--routines', '--triggers', '--events', '--hex-blob',
                '--default-character-set=utf8mb4', '--no-tablespaces', '--skip-dump-date']


def quote_ident(name):
    return '`%s`' % name.replace('`', '``')


# The option-file grammar of the MySQL/MariaDB client library (mysys my_default.c, search_default_file_with_ext):
# one option per line (a newline ends the value: a raw newline would start a new option, e.g. host=...); a value
# in matching quotes keeps '#' and surrounding spaces; in it the escapes \b \t \n \r \s \\ \" \' stand for
# backspace, tab, newline, carriage return, space, backslash and the quotes. Lines are read into a 4 KiB buffer:
# a longer line would be cut, and its rest read as a line of its own.
OPTION_ESCAPES = {'\\': '\\\\', '"': '\\"', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b'}
OPTION_MAX_LINE = 4000


def option_value(text, option='value'):
    """A quoted, escaped option-file value. Control characters that the grammar cannot carry are refused, with
    the option's name in the message, never the value."""
    text = str(text)
    if any((ord(ch) < 32 or ord(ch) == 127) and ch not in OPTION_ESCAPES for ch in text):
        raise DbopsError('%s contains a control character other than newline, carriage return, tab or backspace: '
                         'it cannot be written into the option file the MySQL/MariaDB client tools read, so the '
                         'dump tool could not be given it safely. Use a value without it.' % option)
    quoted = '"%s"' % ''.join(OPTION_ESCAPES.get(ch, ch) for ch in text)
    if len(quoted.encode('utf-8')) > OPTION_MAX_LINE:
        raise DbopsError('%s is longer than the MySQL/MariaDB option file can carry on one line (%d bytes); use a '
                         'shorter value.' % (option, OPTION_MAX_LINE))
    return quoted


def option_path(path, option):
    """A path for `!include` (taken to the end of the line, without quotes or escapes): refuse control chars."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise DbopsError('%s contains control characters (a newline would add lines to the option file given to '
                         'the MySQL/MariaDB client tools); use a path without them.' % option)
    return path


# MariaDB's mariadb-dump/mysqldump, dumping the `mysql` database, write only the structure of these tables
# (CREATE TABLE IF NOT EXISTS, never their rows): the server's log tables and the transaction registry. Observed
# with mariadb-dump 10.19 (MariaDB 10.11) and in client/mysqldump.c (the data of the log tables is skipped;
# MySQL's mysqldump does the same for general_log and slow_log).
SYSTEM_TABLES_WITHOUT_DATA = {'mysql': ('general_log', 'slow_log', 'transaction_registry')}


class MysqlTooling(Tooling):
    engine = 'mysql'
    default_port = 3306
    counts_note = (' (MySQL: the counts come from a snapshot taken just before the dump; writes in between show '
                   'up here)')

    def __init__(self, module, adapter):
        super().__init__(module, adapter)
        self.secret_dir = None
        self._defaults = None

    def cleanup(self):
        if self.secret_dir is not None:
            self.secret_dir.cleanup()
            self.secret_dir = None
            self._defaults = None

    def preflight_tools(self):
        dump = self.tool('dump')
        return dump, tool_version(dump, self.env()), {'client': self.tool('client')}

    def data_bytes(self, tables):
        names = [t['table'] for t in tables]
        if not names:
            return 0
        row = self.db.fetchone(
            'SELECT COALESCE(SUM(DATA_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %%s '
            'AND TABLE_NAME IN (%s)' % ', '.join(['%s'] * len(names)), [self.params['database']] + names)
        return int(row[0] or 0)

    def defaults_file(self):
        if self._defaults:
            return self._defaults
        p = self.params
        lines = []
        config = os.path.expanduser(p.get('config_file') or '')
        if config and os.path.isfile(config):
            lines.append('!include %s' % option_path(config, 'config_file'))
        lines.append('[client]')
        if p.get('login_user') is not None:
            lines.append('user=%s' % option_value(p['login_user'], 'login_user'))
        if p.get('login_password') is not None:
            lines.append('password=%s' % option_value(p['login_password'], 'login_password'))
        if p.get('login_unix_socket'):
            lines.append('socket=%s' % option_value(p['login_unix_socket'], 'login_unix_socket'))
        elif p.get('login_host'):
            lines.append('host=%s' % option_value(p['login_host'], 'login_host'))
            lines.append('protocol=tcp')
        if p.get('login_port'):
            lines.append('port=%d' % int(p['login_port']))
        for opt, key in (('ca_cert', 'ssl-ca'), ('client_cert', 'ssl-cert'), ('client_key', 'ssl-key')):
            if p.get(opt):
                lines.append('%s=%s' % (key, option_value(p[opt], opt)))
        if p.get('ssl_mode') in ('verify-ca', 'verify-full'):
            lines.append('ssl-verify-server-cert')
        self.secret_dir = PrivateDir()
        self._defaults = self.secret_dir.write('client.cnf', '\n'.join(lines) + '\n')
        return self._defaults

    def env(self):
        return {k: v for k, v in os.environ.items() if not k.startswith(('MYSQL_PWD', 'MYSQL_HOST'))}

    def flavour(self):
        return self.db.server_info()['flavour']

    def tool(self, kind):
        """kind: dump | client."""
        names = {('mariadb', 'dump'): ['mariadb-dump', 'mysqldump'], ('mariadb', 'client'): ['mariadb', 'mysql'],
                 ('mysql', 'dump'): ['mysqldump', 'mariadb-dump'], ('mysql', 'client'): ['mysql', 'mariadb']}
        for name in names[(self.flavour(), kind)]:
            path = find_tool(name, self.tool_path)
            if path:
                return path
        raise DbopsError('%s was not found%s or on PATH. Install the %s client package (Debian: mariadb-client or '
                         'default-mysql-client) or set tool_path.' % (
                             ' or '.join(names[(self.flavour(), kind)]),
                             ' in tool_path %s' % self.tool_path if self.tool_path else '', self.flavour()))

    # --- naming ---------------------------------------------------------------------------
    @staticmethod
    def layout(_fmt):
        return 'file'

    @staticmethod
    def extension(_fmt, compression):
        return '.sql' + COMPRESSION_EXT[compression]

    def default_format(self):
        return 'plain'

    # --- source facts ------------------------------------------------------------------------
    def all_tables(self, db=None, database=None):
        db = db or self.db
        rows = db.fetchall(
            "SELECT TABLE_NAME, TABLE_ROWS, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
            "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", [database or self.params['database']])
        return [dict(name=r[0], table=r[0], rows_estimate=int(r[1]) if r[1] is not None else None, engine=r[2])
                for r in rows]

    def select_tables(self, tables, exclude):
        everything = self.all_tables()
        names = [t['name'] for t in everything]
        by_name = {t['name']: t for t in everything}
        for n in list(tables or []) + list(exclude or []):
            if n not in by_name:
                raise DbopsError('Table %r does not exist in database %s.%s' % (
                    n, self.params['database'], did_you_mean(n, names)))
        chosen = [by_name[n] for n in tables] if tables else list(everything)
        ex = set(exclude or [])
        chosen = [t for t in chosen if t['name'] not in ex]
        skipped = SYSTEM_TABLES_WITHOUT_DATA.get(self.params['database'], ())
        return dict(tables=chosen, include=list(chosen) if tables else [],
                    exclude=[by_name[n] for n in exclude or []],
                    without_data=[t['name'] for t in chosen if t['name'] in skipped],
                    without_data_reason='%s writes the structure of these tables of the %s system database, never '
                                        'their rows' % ('mariadb-dump' if self.flavour() == 'mariadb' else 'mysqldump',
                                                        self.params['database']) if skipped else None)

    def database_facts(self):
        row = self.db.fetchone('SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM '
                               'information_schema.SCHEMATA WHERE SCHEMA_NAME = %s', [self.params['database']])
        return dict(charset=row[0], collation=row[1]) if row else {}

    def warnings_for(self, selection):
        odd = sorted(t['name'] for t in selection['tables'] if (t.get('engine') or 'InnoDB') not in ('InnoDB',))
        if odd:
            return ['Tables %s do not use InnoDB: --single-transaction cannot give them a consistent snapshot '
                    'while the application writes to them.' % ', '.join(odd[:20])]
        return []

    # --- dump --------------------------------------------------------------------------------
    def check_options(self, opts):
        """Refuse in check mode what dump_plan refuses in a real run (no dump tool, no compressor). Writes nothing."""
        self.tool('dump')
        if opts['compression'] != 'none':
            compressor_argv(opts['compression'], self.tool_path, opts.get('compression_level'))

    def dump_argv(self, database, schema_only=False, selection=None):
        dump = self.tool('dump')
        argv = [dump, '--defaults-file=%s' % self.defaults_file()] + DUMP_OPTIONS
        if schema_only:
            argv.append('--no-data')
        for t in (selection or {}).get('exclude', []):
            argv.append('--ignore-table=%s.%s' % (database, t['name']))
        argv.append(database)
        for t in (selection or {}).get('include', []):
            argv.append(t['name'])
        return argv

    def dump_plan(self, opts, _out_path, selection, snapshot=None):
        argv = self.dump_argv(self.params['database'], opts.get('schema_only'), selection)
        tools = dict(dump=dict(path=argv[0], version=VersionProbe(argv[0])))
        stages = [Stage(os.path.basename(argv[0]), argv, self.env())]
        if opts['compression'] != 'none':
            cargv = compressor_argv(opts['compression'], self.tool_path, opts.get('compression_level'))
            stages.append(Stage(opts['compression'], cargv))
            tools[opts['compression']] = dict(path=cargv[0], version=VersionProbe(cargv[0]))
        return dict(stages=stages, writes_dir=False, tools=tools)

    def export_snapshot(self):
        """A consistent-snapshot transaction opened just before the dump starts (for verify=restore counts)."""
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql import MysqlAdapter
        snap = MysqlAdapter(ModuleView(self.module))
        snap.connect()
        snap.fetchall('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY')
        return snap, None

    def exact_counts(self, db, tables, database=None):
        out = {}
        for t in tables:
            out[t['name']] = db.fetchone('SELECT COUNT(*) FROM %s.%s' % (
                quote_ident(database or db.params['database']), quote_ident(t['name'])))[0]
        return out

    # --- reading a dump -------------------------------------------------------------------------
    def decompress_stages(self, manifest):
        if manifest.get('compression', 'none') != 'none':
            return [Stage('%s -d' % manifest['compression'],
                          compressor_argv(manifest['compression'], self.tool_path, decompress=True))]
        return []

    def verify_list(self, path, manifest):
        """Parse check: the dump reads to the end, ends with '-- Dump completed', and creates every table."""
        tail = bytearray()
        creates = set()
        pending = bytearray()

        def consume(chunk):
            pending.extend(chunk)
            cut = pending.rfind(b'\n')
            if cut >= 0:
                for m in re.finditer(rb'^CREATE TABLE (?:IF NOT EXISTS )?`((?:[^`]|``)+)`', bytes(pending[:cut]), re.M):
                    creates.add(m.group(1).replace(b'``', b'`').decode('utf-8', 'replace'))
                del pending[:cut + 1]
            tail.extend(chunk)
            del tail[:max(0, len(tail) - 4096)]

        stages = self.decompress_stages(manifest) or [Stage('cat', ['cat'])]
        p = Pipeline(stages, stdin_path=path)
        p.run_to_file(None, os.path.dirname(path), consumer=consume)
        if not p.ok:
            raise p.failure('Reading the dump %s' % path)
        if b'-- Dump completed' not in bytes(tail):
            raise DbopsError('The dump %s is truncated: it does not end with the "-- Dump completed" line that the '
                             'dump tool writes after the last table.' % path)
        missing = sorted(set(t['name'] for t in manifest['tables']) - creates)
        if missing:
            raise DbopsError('The dump %s has no CREATE TABLE for %s, which the manifest lists.'
                             % (path, ', '.join(missing[:20])))
        return dict(method='parsed to the end (%s)' % manifest.get('compression', 'none'),
                    create_table_statements=len(creates))

    # --- databases on the server -------------------------------------------------------------------
    def admin(self, database=None):
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql import MysqlAdapter
        a = MysqlAdapter(ModuleView(self.module, database=None))
        a.connect()
        a.params = dict(a.params, database=database or '')
        return a

    def open_db(self, database):
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql import MysqlAdapter
        a = MysqlAdapter(ModuleView(self.module, database=database))
        a.connect()
        return a

    def database_exists(self, admin, name):
        return bool(admin.fetchall('SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s', [name]))

    def database_objects(self, db, name=None):
        """How many user objects the schema holds: tables and views, triggers, routines, events.
        "Empty" means 0 of all of them."""
        name = name or db.params['database']
        return db.fetchone(
            'SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s) + '
            '(SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s) + '
            '(SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s) + '
            '(SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s)', [name, name, name, name])[0]

    def sessions(self, admin, name, own=None):
        own_id = own.conn.thread_id() if own is not None else 0
        return admin.fetchall('SELECT ID, USER, COMMAND, STATE FROM information_schema.PROCESSLIST '
                              'WHERE DB = %s AND ID <> CONNECTION_ID() AND ID <> %s', [name, own_id])

    def check_facts(self, admin, facts):
        """A manifest's charset/collation must be ones this server has (information_schema.CHARACTER_SETS /
        COLLATIONS); they are then written as quoted identifiers, never as text of the manifest."""
        if facts.get('charset') and not admin.fetchall(
                'SELECT 1 FROM information_schema.CHARACTER_SETS WHERE CHARACTER_SET_NAME = %s', [facts['charset']]):
            raise DbopsError('The manifest\'s database_facts.charset %r is not a character set of this server '
                             '(SHOW CHARACTER SET). Nothing was changed.' % facts['charset'])
        if facts.get('collation') and not admin.fetchall(
                'SELECT 1 FROM information_schema.COLLATIONS WHERE COLLATION_NAME = %s', [facts['collation']]):
            raise DbopsError('The manifest\'s database_facts.collation %r is not a collation of this server '
                             '(SHOW COLLATION). Nothing was changed.' % facts['collation'])

    @staticmethod
    def scratch_busy(admin, name):
        """A session in database `name` is running a statement (the stall watchdog's server-side progress)."""
        return bool(admin.fetchone("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND "
                                   "COMMAND = 'Query' AND ID <> CONNECTION_ID()", [name])[0])

    def create_database(self, admin, name, manifest=None, comment=None):
        q = 'CREATE DATABASE %s' % quote_ident(name)
        facts = (manifest or {}).get('database_facts') or {}
        self.check_facts(admin, facts)
        if facts.get('charset'):
            q += ' CHARACTER SET %s' % quote_ident(facts['charset'])
        if facts.get('collation'):
            q += ' COLLATE %s' % quote_ident(facts['collation'])
        if comment is not None:
            q += ' COMMENT %s' % admin.literal(comment)
        admin.fetchall(q)
        admin.queries.append(q)

    def drop_database(self, admin, name, force=False):
        q = 'DROP DATABASE IF EXISTS %s' % quote_ident(name)
        admin.fetchall(q)
        admin.queries.append(q)

    def server_lock(self, admin, name):
        admin.params = dict(admin.params, database=name)
        admin.acquire_maintenance_lock(self.params.get('wait_for_lock') or 0)

    # --- restore ----------------------------------------------------------------------------------------
    def client_argv(self, target):
        client = self.tool('client')
        return [client, '--defaults-file=%s' % self.defaults_file(), '--batch', '--binary-mode',
                '--default-character-set=utf8mb4', '--database=%s' % target]

    def restore_stages(self, path, manifest, target, jobs=1, no_owner=False, from_stdin=False):
        stages = self.decompress_stages(manifest) + [Stage(os.path.basename(self.tool('client')),
                                                           self.client_argv(target), self.env())]
        return stages, (None if from_stdin else path)

    def clone_stages(self, source, target, schema_only, no_owner=False):
        dump = self.dump_argv(source, schema_only)
        return ([Stage(os.path.basename(dump[0]), dump, self.env()),
                 Stage(os.path.basename(self.tool('client')), self.client_argv(target), self.env())],
                dict(dump=tool_version(dump[0])))

    # --- markers, the side schema and the swap (db_clone, db_restore replace) ----------------------------
    name_limit = 64
    MARKER_TABLE = 'dbops_marker'

    def schema_comments(self, admin):
        """MariaDB 10.5+ has schema comments (information_schema.SCHEMATA.SCHEMA_COMMENT)."""
        return bool(admin.fetchall("SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = 'information_schema' "
                                   "AND TABLE_NAME = 'SCHEMATA' AND COLUMN_NAME = 'SCHEMA_COMMENT'"))

    def marker_comment(self, admin, name):
        """The marker of schema `name`: its comment (MariaDB 10.5+), else the text in its dbops_marker table."""
        if self.schema_comments(admin):
            row = admin.fetchone('SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s',
                                 [name])
            if row and row[0]:
                return row[0]
        if admin.fetchall('SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s',
                          [name, self.MARKER_TABLE]):
            row = admin.fetchone('SELECT marker FROM %s.%s LIMIT 1' % (quote_ident(name), quote_ident(self.MARKER_TABLE)))
            return row[0] if row else None
        return None

    def set_comment(self, admin, name, text):
        if self.schema_comments(admin):
            q = 'ALTER DATABASE %s COMMENT %s' % (quote_ident(name), admin.literal(text))
            admin.queries.append(q)
            admin.fetchall(q)
            return
        t = '%s.%s' % (quote_ident(name), quote_ident(self.MARKER_TABLE))
        for q in ('CREATE TABLE %s (marker text NOT NULL)' % t, 'INSERT INTO %s VALUES (%s)' % (t, admin.literal(text))):
            admin.queries.append(q)
            admin.fetchall(q)

    def list_marked(self, admin):
        out = []
        for (name,) in admin.fetchall('SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1'):
            text = self.marker_comment(admin, name)
            if text:
                out.append((name, text))
        return out

    def database_size(self, admin, name):
        row = admin.fetchone('SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES '
                             'WHERE TABLE_SCHEMA = %s', [name])
        return int(row[0]) if row else 0

    def data_directory(self, admin):
        try:
            return admin.fetchone('SELECT @@datadir')[0]
        except Exception:  # pylint: disable=broad-except
            return None

    def run(self, admin, q):
        admin.queries.append(q)
        admin.fetchall(q)

    def objects(self, admin, schema):
        """Definitions of what RENAME TABLE cannot move to another schema: [(kind, name, sql_mode, create)]."""
        out = []
        s = quote_ident(schema)
        admin.fetchall('USE %s' % s)  # SHOW CREATE qualifies names of another schema than the session's
        for (name,) in admin.fetchall("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s "
                                      "ORDER BY 1", [schema]):
            row = admin.fetchone('SHOW CREATE VIEW %s.%s' % (s, quote_ident(name)))
            out.append(('VIEW', name, None, row[1]))
        for kind, (name,) in [('PROCEDURE', r) for r in admin.fetchall(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
                "AND ROUTINE_TYPE = 'PROCEDURE' ORDER BY 1", [schema])] + [('FUNCTION', r) for r in admin.fetchall(
                "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
                "AND ROUTINE_TYPE = 'FUNCTION' ORDER BY 1", [schema])]:
            row = admin.fetchone('SHOW CREATE %s %s.%s' % (kind, s, quote_ident(name)))
            out.append((kind, name, row[1], row[2]))
        for (name,) in admin.fetchall("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
                                      "ORDER BY ACTION_ORDER", [schema]):
            row = admin.fetchone('SHOW CREATE TRIGGER %s.%s' % (s, quote_ident(name)))
            out.append(('TRIGGER', name, row[1], row[2]))
        for (name,) in admin.fetchall("SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s "
                                      "ORDER BY 1", [schema]):
            row = admin.fetchone('SHOW CREATE EVENT %s.%s' % (s, quote_ident(name)))
            out.append(('EVENT', name, row[1], row[3]))
        return out

    def drop_objects(self, admin, schema, objects):
        for kind, name, _mode, _create in objects:
            self.run(admin, 'DROP %s IF EXISTS %s.%s' % (kind, quote_ident(schema), quote_ident(name)))

    def create_objects(self, admin, schema, objects):
        """Run each object's CREATE in `schema` (the definitions name their objects without a schema), each with
        the sql_mode it was created with."""
        admin.fetchall('USE %s' % quote_ident(schema))
        order = ['FUNCTION', 'PROCEDURE', 'VIEW', 'TRIGGER', 'EVENT']
        todo = sorted(objects, key=lambda o: order.index(o[0]))
        try:
            while todo:
                failed, error = [], None
                for obj in todo:
                    kind, _name, mode, create = obj
                    if mode is not None:
                        admin.fetchall('SET SESSION sql_mode = %s', [mode])
                    try:
                        admin.fetchall(create)
                        admin.queries.append(create)
                    except Exception as e:  # pylint: disable=broad-except
                        if kind != 'VIEW':  # a view may need another view created after it: try again
                            raise
                        failed.append(obj)
                        error = e
                    finally:
                        if mode is not None:
                            admin.fetchall('SET SESSION sql_mode = DEFAULT')
                if len(failed) == len(todo):
                    raise error
                todo = failed
        finally:
            admin.fetchall('SET SESSION sql_mode = DEFAULT')

    def base_tables(self, admin, schema):
        return [r[0] for r in admin.fetchall("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                                             "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED', 'SEQUENCE') "
                                             "ORDER BY 1", [schema])]

    def schema_facts(self, admin, name):
        row = admin.fetchone('SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM '
                             'information_schema.SCHEMATA WHERE SCHEMA_NAME = %s', [name])
        return dict(charset=row[0], collation=row[1])

    def tables_of(self, db, name):
        return self.all_tables(db, database=name)

    def guard_replaced(self, admin, target, tdb, objects):
        """Replacing moves the target's tables (RENAME TABLE), which waits for every session using them."""
        others = self.sessions(admin, target, own=tdb)
        if others and objects:
            raise DbopsError('Database %s has %d other session(s) (%s); replacing it moves its tables, '
                             'which waits for them. Stop the application first. Nothing was changed.'
                             % (target, len(others), '; '.join(str(tuple(o)) for o in others[:5])))

    def swap_plan(self, target, side, replaced):
        return ['CREATE DATABASE %s (marked as this collection\'s)' % replaced,
                'drop the triggers and views of %s and %s (RENAME TABLE cannot move them)' % (side, target),
                'RENAME TABLE %s.* TO %s.*, %s.* TO %s.* (one atomic statement)' % (target, replaced, side, target),
                'recreate in %s the views, routines, triggers and events of the backup, and in %s those of '
                'the replaced database' % (target, replaced),
                'DROP DATABASE %s (now empty)' % side]

    def move_in(self, admin, side, target):
        """A new target: create it, move the side schema's tables there in one RENAME TABLE, recreate the rest."""
        facts = self.schema_facts(admin, side)
        self.create_database(admin, target, dict(database_facts=facts))
        try:
            objects = self.objects(admin, side)
            self.drop_objects(admin, side, [o for o in objects if o[0] in ('TRIGGER', 'VIEW')])
            tables = self.base_tables(admin, side)
            if tables:
                self.run(admin, 'RENAME TABLE ' + ', '.join(
                    '%s.%s TO %s.%s' % (quote_ident(side), quote_ident(t), quote_ident(target), quote_ident(t)) for t in tables))
            self.create_objects(admin, target, objects)
        except BaseException:
            self.drop_database(admin, target)
            self.drop_database(admin, side)
            raise
        self.drop_database(admin, side)

    def swap_in(self, admin, target, side, replaced, tdb, now):  # pylint: disable=unused-argument
        """One atomic multi-table RENAME TABLE: target.a -> replaced.a and side.a -> target.a for every table.
        What RENAME TABLE cannot move between schemas (views, triggers, routines, events) is recreated from its
        definition: the target's triggers are dropped just before the RENAME and the backup's are created right
        after it, so between the two, writes to the target fire no trigger and its views/routines may be the old
        ones (the window documented in db_restore). Any failure renames back and recreates what was dropped."""
        facts = self.schema_facts(admin, target)
        self.create_database(admin, replaced, dict(database_facts=facts))
        self.set_comment(admin, replaced, marker_text('replaced', target, iso(now)))
        new_objects = self.objects(admin, side)
        old_objects = self.objects(admin, target)
        side_tables = self.base_tables(admin, side)
        old_tables = self.base_tables(admin, target)
        moved = False
        try:
            self.drop_objects(admin, side, [o for o in new_objects if o[0] in ('TRIGGER', 'VIEW')])
            self.drop_objects(admin, target, [o for o in old_objects if o[0] == 'TRIGGER'])
            fail_at('between_renames')
            self.run(admin, 'RENAME TABLE ' + ', '.join(
                ['%s.%s TO %s.%s' % (quote_ident(target), quote_ident(t), quote_ident(replaced), quote_ident(t)) for t in old_tables]
                + ['%s.%s TO %s.%s' % (quote_ident(side), quote_ident(t), quote_ident(target), quote_ident(t)) for t in side_tables]))
            moved = True
            self.drop_objects(admin, target, [o for o in old_objects if o[0] != 'TRIGGER'])
            self.create_objects(admin, target, new_objects)
            fail_at('swapped')
        except BaseException as e:
            try:
                if moved:
                    self.drop_objects(admin, target, new_objects)
                    self.run(admin, 'RENAME TABLE ' + ', '.join(
                        ['%s.%s TO %s.%s' % (quote_ident(target), quote_ident(t), quote_ident(side), quote_ident(t)) for t in side_tables]
                        + ['%s.%s TO %s.%s' % (quote_ident(replaced), quote_ident(t), quote_ident(target), quote_ident(t)) for t in old_tables]))
                    self.create_objects(admin, target, [o for o in old_objects if o[0] != 'TRIGGER'])
                self.create_objects(admin, target, [o for o in old_objects if o[0] == 'TRIGGER'])
                self.drop_database(admin, side)
                self.drop_database(admin, replaced)
            except Exception as e2:  # pylint: disable=broad-except
                raise DbopsError('Swapping in the restored schema failed (%s), and undoing it failed too (%s). The '
                                 'original tables are in %s, the restored ones in %s; put them in place by hand.'
                                 % (e, e2, replaced if moved else target, target if moved else side))
            if isinstance(e, Interrupted) or not isinstance(e, Exception):
                raise
            raise DbopsError('%s Nothing was replaced: the tables and objects of %s are as they were; the side '
                             'schema %s was dropped.' % (e, target, side), **getattr(e, 'details', {}))
        try:
            self.create_objects(admin, replaced, old_objects)
        except Exception as e:  # pylint: disable=broad-except
            self.module.warn('The replaced copy %s holds the old tables, but not all of their views/routines/'
                             'triggers/events could be recreated there: %s' % (replaced, e))
        self.drop_database(admin, side)
