# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL dump/restore tooling: pg_dump, pg_restore, psql, chosen by server version.

The password reaches the tools as PGPASSWORD in the child's environment only.
pg_dump must be at least the server's major version; the smallest suitable
major is used (the server's own, when installed), found in tool_path, the
Debian/PGDG directories, the pgserver wheel and PATH.
"""

from __future__ import annotations

import os
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.base import (
    ModuleView, Tooling, fail_at, marker_text,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.common import COMPRESSION_EXT, Interrupted, iso
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.pipeline import Pipeline, Stage, map_threads, run_tool
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.tools import (
    VersionProbe, candidate_bin_dirs, compressor_argv, is_pg_wrapper, parse_major, tool_version,
)

try:
    from psycopg import sql
except ImportError:  # pragma: no cover - the adapter reports the missing driver
    sql = None

SYSTEM_SCHEMAS = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"


class PgTooling(Tooling):
    engine = 'postgresql'
    default_port = 5432

    def __init__(self, module, adapter):
        super().__init__(module, adapter)
        self._bin = {}

    def check_mode_tools(self):
        d, _major, line = self.bin_dir()
        return dict(pg_dump=dict(path=os.path.join(d, 'pg_dump'), version=line))

    def preflight_tools(self):
        d, _major, version = self.bin_dir()
        return os.path.join(d, 'pg_dump'), version, {name: self.tool(name) for name in ('pg_restore', 'psql')}

    def data_bytes(self, tables):
        # pg_table_size(): heap and TOAST, no indexes (a dump holds index definitions, not index pages)
        if not tables:
            return 0
        row = self.db.fetchone(
            "SELECT COALESCE(sum(pg_table_size(format('%%I.%%I', s, t)::regclass)), 0)::bigint "
            "FROM unnest(%s::text[], %s::text[]) AS x(s, t)",
            [[t['schema'] for t in tables], [t['table'] for t in tables]])
        return int(row[0] or 0)

    def compresses_itself(self, fmt):
        return fmt in (None, 'custom', 'directory')

    # --- environment and tools ------------------------------------------------------
    def env(self, database=None):
        info = self.db.conninfo()
        env = {k: v for k, v in os.environ.items() if not k.startswith('PG')}
        mapping = dict(host='PGHOST', port='PGPORT', user='PGUSER', password='PGPASSWORD', sslmode='PGSSLMODE',
                       sslrootcert='PGSSLROOTCERT', sslcert='PGSSLCERT', sslkey='PGSSLKEY',
                       connect_timeout='PGCONNECT_TIMEOUT', application_name='PGAPPNAME')
        for key, var in mapping.items():
            if info.get(key) is not None:
                env[var] = str(info[key])
        # Unset options fall back to libpq's environment of the module, as the driver does.
        for var in ('PGHOST', 'PGPORT', 'PGUSER', 'PGPASSWORD', 'PGPASSFILE', 'PGSSLMODE', 'PGSERVICE',
                    'PGSERVICEFILE', 'PGSSLROOTCERT', 'PGSSLCERT', 'PGSSLKEY'):
            if var not in env and os.environ.get(var):
                env[var] = os.environ[var]
        env['PGDATABASE'] = database or self.params['database']
        env['LC_MESSAGES'] = 'C'
        return env

    def server_major(self):
        return self.db.server_version // 10000

    def bin_dir(self, minimum_major=None):
        """(dir, major, version line) of the client tools to use."""
        need = max(self.server_major(), minimum_major or 0)
        if need in self._bin:
            return self._bin[need]
        if self.tool_path:
            path = os.path.join(self.tool_path, 'pg_dump')
            if not os.path.isfile(path):
                raise DbopsError('tool_path %s has no pg_dump. Give the bin directory of a PostgreSQL %d or later '
                                 'client (e.g. /usr/lib/postgresql/%d/bin).' % (self.tool_path, need, need))
            line = tool_version(path)
            self._bin[need] = (self.tool_path, parse_major(line) or 0, line)
            return self._bin[need]
        dirs = candidate_bin_dirs()
        # Debian's pg_wrapper only if there is nothing else; every candidate's --version is asked at once
        dirs = [d for d in dirs if not is_pg_wrapper(os.path.join(d, 'pg_dump'))] or dirs
        lines = map_threads(lambda d: tool_version(os.path.join(d, 'pg_dump')), dirs, len(dirs))
        found = []
        for order, (d, line) in enumerate(zip(dirs, lines)):
            major = parse_major(line)
            if major:
                found.append((major, order, d, line))
        # the smallest suitable major; between equal majors, the first in the search order
        suitable = sorted(f for f in found if f[0] >= need)
        if not suitable:
            raise DbopsError(
                'No pg_dump of PostgreSQL %d or later was found (the server is %s; pg_dump refuses a newer server). '
                'Found: %s. Install postgresql-client-%d, or set tool_path to its bin directory.'
                % (need, self.db.server_info()['version'],
                   ', '.join('%s (%d)' % (d, m) for m, _o, d, _l in found) or 'none', need))
        major, _order, d, line = suitable[0]
        self._bin[need] = (d, major, line)
        return self._bin[need]

    def tool(self, name, minimum_major=None):
        d, _major, _line = self.bin_dir(minimum_major)
        path = os.path.join(d, name)
        if not os.path.isfile(path):
            raise DbopsError('%s is missing from %s (the PostgreSQL client directory chosen for pg_dump). '
                             'Install the full client package or set tool_path.' % (name, d))
        return path

    # --- naming -----------------------------------------------------------------------
    @staticmethod
    def layout(fmt):
        return 'directory' if fmt == 'directory' else 'file'

    @staticmethod
    def extension(fmt, compression):
        if fmt == 'custom':
            return '.dump'
        if fmt == 'directory':
            return '.dir'
        return '.sql' + COMPRESSION_EXT[compression]

    def default_format(self):
        return 'custom'

    # --- source facts -------------------------------------------------------------------
    def all_tables(self, db=None):
        db = db or self.db
        rows = db.fetchall(
            "SELECT n.nspname, c.relname, c.reltuples::bigint FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND %s ORDER BY 1, 2" % SYSTEM_SCHEMAS)
        return [dict(name='%s.%s' % (r[0], r[1]), schema=r[0], table=r[1],
                     rows_estimate=int(r[2]) if r[2] is not None and r[2] >= 0 else None) for r in rows]

    def select_tables(self, tables, exclude):
        """Resolve table names ('table' or 'schema.table', exact) to the source's tables."""
        everything = self.all_tables()
        by_name = {t['name']: t for t in everything}

        def resolve(name):
            if name in by_name:
                return by_name[name]
            matches = [t for t in everything if t['table'] == name]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise DbopsError('Table name %r is in several schemas (%s); write it as schema.table.'
                                 % (name, ', '.join(t['name'] for t in matches)))
            from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import did_you_mean
            raise DbopsError('Table %r does not exist in database %s.%s Names are exact and case-sensitive.'
                             % (name, self.params['database'], did_you_mean(name, list(by_name) + [t['table'] for t in everything])))
        chosen = [resolve(n) for n in tables] if tables else list(everything)
        excluded = [resolve(n) for n in exclude or []]
        ex_names = set(t['name'] for t in excluded)
        chosen = [t for t in chosen if t['name'] not in ex_names]
        return dict(tables=chosen, include=list(chosen) if tables else [], exclude=excluded)

    @staticmethod
    def pattern(t):
        return '"%s"."%s"' % (t['schema'].replace('"', '""'), t['table'].replace('"', '""'))

    def database_facts(self):
        row = self.db.fetchall(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
            "WHERE datname = current_database()")[0]
        return dict(encoding=row[0], collate=row[1], ctype=row[2])

    # --- compression --------------------------------------------------------------------
    def compress_option(self, compression, level, fmt, major, pg_dump):
        if fmt == 'plain':
            return ['--compress=0'] if major >= 16 else ['-Z', '0']
        if compression == 'none':
            return ['--compress=0'] if major >= 16 else ['-Z', '0']
        if major < 16:
            if compression == 'gzip':
                return ['-Z', str(level if level is not None else 6)]
            raise DbopsError('pg_dump %d (%s) cannot compress the %s format with %s: before PostgreSQL 16, pg_dump '
                             'only has gzip. Use compression gzip, format plain (compressed by the %s tool), or set '
                             'tool_path to the bin directory of a pg_dump 16+ built with %s.'
                             % (major, pg_dump, fmt, compression, compression, compression))
        spec = compression + (':%d' % level if level is not None else '')
        rc, _out, err = run_tool([pg_dump, '--compress=%s' % spec, '--schema-only', '-f', os.devnull],
                                 env=dict(self.env('x'), PGHOST='/nonexistent-dbops-probe', PGPORT='1',
                                          PGCONNECT_TIMEOUT='1', PGPASSWORD=''), timeout=20)
        if 'compress' in err.lower() and ('support' in err.lower() or 'invalid' in err.lower()):
            raise DbopsError('pg_dump %d at %s cannot compress with %s (it says: %s). Use compression gzip, '
                             'format plain (compressed by the %s tool), or set tool_path to a pg_dump built with %s.'
                             % (major, pg_dump, compression, err.splitlines()[-1], compression, compression))
        return ['--compress=%s' % spec]

    # --- dump -----------------------------------------------------------------------------
    def check_options(self, opts):
        """Refuse in check mode what dump_plan refuses in a real run (a compression this pg_dump lacks, a missing
        compressor), with the same message. Writes nothing."""
        _d, major, _line = self.bin_dir()
        self.compress_option(opts['compression'], opts.get('compression_level'), opts['format'], major,
                             self.tool('pg_dump'))
        if opts['format'] == 'plain' and opts['compression'] != 'none':
            compressor_argv(opts['compression'], self.tool_path, opts.get('compression_level'))

    def dump_plan(self, opts, out_path, selection, snapshot=None):
        """The pipeline of a dump. Returns dict(stages, writes_dir, tools)."""
        fmt, compression = opts['format'], opts['compression']
        d, major, line = self.bin_dir()
        pg_dump = self.tool('pg_dump')
        argv = [pg_dump, '--no-password', '--format=%s' % fmt]
        argv += self.compress_option(compression, opts.get('compression_level'), fmt, major, pg_dump)
        if opts.get('jobs') and opts['jobs'] > 1:
            argv.append('--jobs=%d' % opts['jobs'])
        if opts.get('schema_only'):
            argv.append('--schema-only')
        for t in selection['include']:
            argv.append('--table=%s' % self.pattern(t))
        for t in selection['exclude']:
            argv.append('--exclude-table=%s' % self.pattern(t))
        if snapshot:
            argv.append('--snapshot=%s' % snapshot)
        tools = dict(pg_dump=dict(path=pg_dump, version=line, bin_dir=d,
                                  chosen_because='PostgreSQL %d client for a %s server' % (
                                      major, self.db.server_info()['version'])))
        if fmt == 'directory':
            argv.append('--file=%s' % out_path)
            return dict(stages=[Stage('pg_dump', argv, self.env())], writes_dir=True, tools=tools)
        stages = [Stage('pg_dump', argv, self.env())]
        if fmt == 'plain' and compression != 'none':
            cargv = compressor_argv(compression, self.tool_path, opts.get('compression_level'))
            stages.append(Stage(compression, cargv))
            tools[compression] = dict(path=cargv[0], version=VersionProbe(cargv[0]))
        return dict(stages=stages, writes_dir=False, tools=tools)

    def export_snapshot(self):
        """A second session holding a repeatable-read snapshot that pg_dump shares (--snapshot)."""
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql import PostgresAdapter
        snap = PostgresAdapter(ModuleView(self.module))
        snap.connect()
        snap.conn.execute('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
        return snap, snap.fetchone('SELECT pg_export_snapshot()')[0]

    def exact_counts(self, db, tables):
        out = {}
        for t in tables:
            q = sql.SQL('SELECT count(*) FROM {}').format(sql.Identifier(t['schema'], t['table']))
            out[t['name']] = db.fetchone(q)[0]
        return out

    # --- archive reading ----------------------------------------------------------------------
    def restore_major(self, manifest):
        dump_major = parse_major((manifest.get('tools') or {}).get('pg_dump', {}).get('version', '')) or 0
        return dump_major

    def decompress_stages(self, manifest):
        if manifest['format'] == 'plain' and manifest.get('compression', 'none') != 'none':
            return [Stage('%s -d' % manifest['compression'],
                          compressor_argv(manifest['compression'], self.tool_path, decompress=True))]
        return []

    def verify_list(self, path, manifest):
        """pg_restore --list (custom/directory): the archive's table of contents is readable and complete."""
        if manifest['format'] == 'plain':
            return self.verify_plain(path, manifest)
        pg_restore = self.tool('pg_restore', self.restore_major(manifest))
        rc, out, err = run_tool([pg_restore, '--list', path], env=self.env(), timeout=3600, redact=self.db.redact)
        if rc != 0:
            raise DbopsError('pg_restore --list cannot read %s (exit code %d): %s' % (path, rc, err[-1000:]))
        text = out.decode('utf-8', 'replace')
        data = set()
        for line in text.splitlines():
            m = re.match(r'^\d+;\s*\d+\s+\d+\s+TABLE DATA\s+(\S+)\s+(\S+)\s', line)
            if m:
                data.add('%s.%s' % (m.group(1), m.group(2)))
        entries = len([ln for ln in text.splitlines() if ln and not ln.startswith(';')])
        want = set(t['name'] for t in manifest['tables'])
        if not manifest.get('schema_only'):
            missing = sorted(n for n in want if n not in data and n.replace('"', '') not in data)
            if missing and all('"' not in n and ' ' not in n for n in missing):
                raise DbopsError('The archive %s has no data for table(s) %s that the manifest lists.'
                                 % (path, ', '.join(missing[:20])))
        return dict(method='pg_restore --list', entries=entries, tables_with_data=len(data))

    def verify_plain(self, path, manifest):
        """A plain dump is complete when pg_dump wrote its closing comment ('PostgreSQL database dump complete')."""
        tail = bytearray()
        creates = set()

        def consume(chunk):
            tail.extend(chunk)
            for m in re.finditer(rb'\nCREATE TABLE ([^\s(]+) \(', bytes(tail)):
                creates.add(m.group(1).decode('utf-8', 'replace'))
            del tail[:max(0, len(tail) - 4096)]

        stages = self.decompress_stages(manifest) or [Stage('cat', ['cat'])]
        p = Pipeline(stages, stdin_path=path)
        p.run_to_file(None, os.path.dirname(path), consumer=consume)
        if not p.ok:
            raise p.failure('Reading the plain dump %s' % path)
        if b'PostgreSQL database dump complete' not in bytes(tail):
            raise DbopsError('The plain dump %s is truncated: it does not end with pg_dump\'s '
                             '"PostgreSQL database dump complete" line.' % path)
        return dict(method='plain dump read to the end (%s)' % (manifest.get('compression') or 'none'),
                    create_table_statements=len(creates))

    # --- databases on the server -----------------------------------------------------------------
    def admin(self, database='postgres'):
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql import PostgresAdapter
        a = PostgresAdapter(ModuleView(self.module, database=database))
        a.connect()
        return a

    def open_db(self, database):
        return self.admin(database)

    def database_exists(self, admin, name):
        return bool(admin.fetchall('SELECT 1 FROM pg_database WHERE datname = %s', [name]))

    def database_objects(self, db):
        """How many user objects the database holds: relations (tables, views, materialized views, sequences,
        foreign tables, composite types), functions/procedures, types (enum, domain, range), event triggers,
        schemas other than public, extensions other than plpgsql. "Empty" means 0 of all of them."""
        return db.fetchone(
            "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "        WHERE c.relkind IN ('r','p','v','m','S','f','c') AND %s "
            "        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')) "
            "     + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE %s "
            "        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')) "
            "     + (SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE %s "
            "        AND t.typtype IN ('e','d','r') "
            "        AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = t.oid AND d.deptype = 'e')) "
            "     + (SELECT count(*) FROM pg_event_trigger) "
            "     + (SELECT count(*) FROM pg_namespace n WHERE %s AND n.nspname <> 'public') "
            "     + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')"
            % (SYSTEM_SCHEMAS, SYSTEM_SCHEMAS, SYSTEM_SCHEMAS, SYSTEM_SCHEMAS))[0]

    def sessions(self, admin, name, own=None):
        own_pid = own.conn.info.backend_pid if own is not None else 0
        return admin.fetchall(
            'SELECT pid, usename, application_name, state FROM pg_stat_activity WHERE datname = %s '
            'AND pid <> pg_backend_pid() AND pid <> %s', [name, own_pid])

    def check_facts(self, admin, facts):
        """database_facts of a manifest, checked against this server before they reach CREATE DATABASE (as
        literals): the encoding must be one the server knows; collate/ctype are locale names (validated in
        manifest.py) that the server checks itself."""
        enc = facts.get('encoding')
        if enc is not None and admin.fetchone('SELECT pg_char_to_encoding(%s)', [enc])[0] < 0:
            raise DbopsError('The manifest\'s database_facts.encoding %r is not an encoding this PostgreSQL server '
                             'knows. Nothing was changed.' % enc)

    @staticmethod
    def scratch_busy(admin, name):
        """A session in database `name` is running a statement (the stall watchdog's server-side progress)."""
        return bool(admin.fetchone("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                                   "AND pid <> pg_backend_pid()", [name])[0])

    def create_database(self, admin, name, manifest=None):
        facts = (manifest or {}).get('database_facts') or {}
        if not facts:
            q = sql.SQL('CREATE DATABASE {} TEMPLATE template0').format(sql.Identifier(name))
        else:
            self.check_facts(admin, facts)
            q = sql.SQL('CREATE DATABASE {} TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}').format(
                sql.Identifier(name), sql.Literal(facts['encoding']), sql.Literal(facts['collate']),
                sql.Literal(facts['ctype']))
        admin.conn.execute(q)
        admin.queries.append(admin.render(q))

    def drop_database(self, admin, name, force=False):
        q = sql.SQL('DROP DATABASE IF EXISTS {}').format(sql.Identifier(name))
        if force and self.db.server_version >= 130000:
            q = q + sql.SQL(' WITH (FORCE)')
        admin.conn.execute(q)
        admin.queries.append(admin.render(q))

    def server_lock(self, admin, name):
        """An advisory lock in the maintenance database, keyed on the target's name: held while the target
        is dropped, recreated and restored (the per-database maintenance lock cannot be held by a session
        that is not connected to that database)."""
        ok = admin.fetchone('SELECT pg_try_advisory_lock(%s, hashtext(%s))', [0x64626F71, name])[0]
        if not ok:
            raise DbopsError('Another dbops restore or clone is working on database %s right now; run again when '
                             'it has finished.' % name)

    # --- restore --------------------------------------------------------------------------------------
    def restore_stages(self, path, manifest, target, jobs=1, no_owner=False, from_stdin=False):
        """Stages that restore `path` (or stdin) into `target`; stop at the first error."""
        if manifest['format'] == 'plain':
            psql = self.tool('psql', self.restore_major(manifest))
            argv = [psql, '--no-password', '--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--single-transaction',
                    '--dbname=%s' % conninfo_dbname(target)]
            if not from_stdin and not self.decompress_stages(manifest):
                argv.append('--file=%s' % path)
            stages = self.decompress_stages(manifest) + [Stage('psql', argv, self.env(target))]
            return stages, (path if stages[0].name != 'psql' else None)
        pg_restore = self.tool('pg_restore', self.restore_major(manifest))
        argv = [pg_restore, '--no-password', '--exit-on-error', '--dbname=%s' % conninfo_dbname(target)]
        if no_owner:
            argv += ['--no-owner', '--no-privileges']
        if jobs and jobs > 1 and manifest['format'] == 'directory':
            argv.append('--jobs=%d' % jobs)
        else:
            argv.append('--single-transaction')
        if not from_stdin:
            argv.append(path)
        return [Stage('pg_restore', argv, self.env(target))], None

    def clone_stages(self, source, target, schema_only, no_owner=False):
        pg_dump = self.tool('pg_dump')
        d, major, line = self.bin_dir()
        dump = [pg_dump, '--no-password', '--format=custom'] + (['--compress=0'] if major >= 16 else ['-Z', '0'])
        if schema_only:
            dump.append('--schema-only')
        manifest = dict(format='custom', tools=dict(pg_dump=dict(version=line)))
        restore, _stdin = self.restore_stages(None, manifest, target, no_owner=no_owner, from_stdin=True)
        return [Stage('pg_dump', dump, self.env(source))] + restore, dict(pg_dump=line, bin_dir=d)

    # --- the side database and the swap (db_restore replace) --------------------------------------------
    name_limit = 63   # NAMEDATALEN - 1 bytes

    def marker_comment(self, admin, name):
        """The database's comment (shobj_description), or None."""
        row = admin.fetchone("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                             [name])
        return row[0] if row else None

    def set_comment(self, admin, name, text):
        q = sql.SQL('COMMENT ON DATABASE {} IS {}').format(sql.Identifier(name), sql.Literal(text))
        admin.conn.execute(q)
        admin.queries.append(admin.render(q))

    def list_marked(self, admin):
        """[(name, comment)] of every database with a comment (the caller picks the ones with its marker)."""
        return admin.fetchall("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                              "WHERE shobj_description(oid, 'pg_database') IS NOT NULL ORDER BY 1")

    def database_size(self, admin, name):
        row = admin.fetchone('SELECT pg_database_size(%s)', [name])
        return row[0] if row else 0

    def data_directory(self, admin):
        """The server's data directory, when this session may read it (superuser, pg_read_all_settings)."""
        try:
            return admin.fetchone("SELECT current_setting('data_directory')")[0]
        except Exception:  # pylint: disable=broad-except
            return None

    def properties(self, admin, name):
        """Database-level properties that live in the catalog, not in an archive without --create: owner, ACL,
        ALTER DATABASE/ROLE ... SET settings, comment, connection limit, ALLOW_CONNECTIONS."""
        row = admin.fetchone(
            "SELECT d.oid, r.rolname, d.datacl IS NOT NULL, d.datconnlimit, d.datallowconn, "
            "shobj_description(d.oid, 'pg_database') FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
            "WHERE d.datname = %s", [name])
        oid = row[0]
        acl = admin.fetchall(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END, a.privilege_type, "
            "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.oid = %s ORDER BY 1, 2", [oid])
        settings = admin.fetchall(
            "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END, unnest(s.setconfig) "
            "FROM pg_db_role_setting s WHERE s.setdatabase = %s ORDER BY 1, 2", [oid])
        return dict(owner=row[1], explicit_acl=row[2], acl=[list(a) for a in acl], connlimit=row[3],
                    allowconn=row[4], comment=row[5], settings=[list(x) for x in settings])

    LIST_SETTINGS = ('search_path', 'temp_tablespaces', 'session_preload_libraries', 'local_preload_libraries',
                     'shared_preload_libraries', 'default_text_search_config')

    def _setting_value(self, name, value):
        if name in self.LIST_SETTINGS[:-1]:
            items, cur, quoted = [], '', False
            for ch in value:
                if ch == '"':
                    quoted = not quoted
                    cur += ch
                elif ch == ',' and not quoted:
                    items.append(cur.strip())
                    cur = ''
                else:
                    cur += ch
            items.append(cur.strip())
            return sql.SQL(', ').join(sql.Literal(i[1:-1].replace('""', '"') if len(i) > 1 and i[0] == i[-1] == '"'
                                                  else i) for i in items if i)
        return sql.Literal(value)

    def property_statements(self, name, props):
        """The statements that give database `name` the properties of another one (see properties())."""
        db = sql.Identifier(name)
        out = [sql.SQL('ALTER DATABASE {} OWNER TO {}').format(db, sql.Identifier(props['owner']))]
        if props['explicit_acl']:
            out.append(sql.SQL('REVOKE ALL ON DATABASE {} FROM PUBLIC').format(db))
            out.append(sql.SQL('REVOKE ALL ON DATABASE {} FROM {}').format(db, sql.Identifier(props['owner'])))
            for grantee, priv, grantable in props['acl']:
                out.append(sql.SQL('GRANT {} ON DATABASE {} TO {}{}').format(
                    sql.SQL(priv), db, sql.SQL('PUBLIC') if grantee is None else sql.Identifier(grantee),
                    sql.SQL(' WITH GRANT OPTION' if grantable else '')))
        for role, item in props['settings']:
            key, _eq, value = item.partition('=')
            if role is None:
                out.append(sql.SQL('ALTER DATABASE {} SET {} = {}').format(
                    db, sql.Identifier(*key.split('.')), self._setting_value(key, value)))
            else:
                out.append(sql.SQL('ALTER ROLE {} IN DATABASE {} SET {} = {}').format(
                    sql.Identifier(role), db, sql.Identifier(*key.split('.')), self._setting_value(key, value)))
        out.append(sql.SQL('COMMENT ON DATABASE {} IS {}').format(
            db, sql.Literal(props['comment']) if props['comment'] is not None else sql.SQL('NULL')))
        out.append(sql.SQL('ALTER DATABASE {} CONNECTION LIMIT {}').format(db, sql.Literal(int(props['connlimit']))))
        return out

    def run(self, admin, q):
        admin.queries.append(admin.render(q))
        admin.conn.execute(q)

    def allow_connections(self, admin, name, allow):
        self.run(admin, sql.SQL('ALTER DATABASE {} ALLOW_CONNECTIONS {}').format(
            sql.Identifier(name), sql.SQL('true' if allow else 'false')))

    def end_sessions(self, admin, name, tries=50):
        """Terminate every session on `name` (its connections are refused already) and wait until none is left.
        Raises DbopsError naming the sessions that would not go."""
        import time
        left = []
        for attempt in range(tries):
            left = self.sessions(admin, name)
            if not left:
                return
            admin.fetchall('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s '
                           'AND pid <> pg_backend_pid()', [name])
            time.sleep(min(0.05 * (attempt + 1), 0.5))
        raise DbopsError('%d session(s) on %s did not end after pg_terminate_backend (%s); the database was not '
                         'replaced.' % (len(left), name, '; '.join(str(tuple(x)) for x in left[:5])))

    def rename(self, admin, old, new):
        self.run(admin, sql.SQL('ALTER DATABASE {} RENAME TO {}').format(sql.Identifier(old), sql.Identifier(new)))

    def swap_plan(self, target, side, replaced):
        return ['give %s the database-level properties of %s: owner, GRANTs, ALTER DATABASE/ROLE ... SET '
                'settings, comment, connection limit' % (side, target),
                'ALTER DATABASE %s ALLOW_CONNECTIONS false; terminate its sessions until none is left' % target,
                'ALTER DATABASE %s RENAME TO %s' % (target, replaced),
                'ALTER DATABASE %s RENAME TO %s' % (side, target),
                'restore ALLOW_CONNECTIONS; mark %s as this collection\'s (COMMENT)' % replaced]

    def swap_in(self, admin, target, side, replaced, tdb, now):
        """From the maintenance database: the side database gets the target's database-level properties, the
        target stops taking connections and its sessions are terminated, then two renames. Any failure puts
        the target back (rename back, connections allowed as before) and drops the side database."""
        props = self.properties(admin, target)
        renamed = False
        try:
            for q in self.property_statements(side, props):
                self.run(admin, q)
            fail_at('properties')
            tdb.close()  # our own session on the target (and its maintenance lock; server_lock stays held)
            self.allow_connections(admin, target, False)
            self.end_sessions(admin, target)
            self.rename(admin, target, replaced)
            renamed = True
            fail_at('between_renames')
            self.rename(admin, side, target)
        except BaseException as e:
            undo = []
            try:
                if renamed:
                    self.rename(admin, replaced, target)
                    undo.append('renamed %s back to %s' % (replaced, target))
                if props['allowconn']:
                    self.allow_connections(admin, target, True)
                self.drop_database(admin, side, force=True)
                undo.append('dropped the side database %s' % side)
            except Exception as e2:  # pylint: disable=broad-except
                raise DbopsError('Swapping in the restored database failed (%s), and undoing it failed too (%s). '
                                 'The original database is %s; the restored copy is %s. Put them in place by hand.'
                                 % (e, e2, replaced if renamed else target, side))
            if isinstance(e, Interrupted) or not isinstance(e, Exception):
                raise
            raise DbopsError('%s Nothing was replaced: %s; %s is as it was.'
                             % (e, ', '.join(undo), target), **getattr(e, 'details', {}))
        # the swap is done: the replaced copy keeps its properties, and is marked as ours
        if props['allowconn']:
            self.allow_connections(admin, replaced, True)
        else:
            self.allow_connections(admin, target, False)
        self.set_comment(admin, replaced, marker_text('replaced', target, iso(now), comment=props['comment']))

    def move_in(self, admin, side, target):
        self.rename(admin, side, target)


def conninfo_dbname(name):
    """A conninfo string that names only the database (host, user and password come from the environment)."""
    return "dbname='%s'" % name.replace('\\', '\\\\').replace("'", "\\'")
