# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite backup tooling: the online backup API (sqlite3.Connection.backup).

The backup copies every page in one step under a read transaction, so the copy
is one consistent state of the database even while the application writes (in
WAL mode the writers are not even blocked). The copy is then streamed through
the compressor and the hashing writer like the dumps of the other engines.
"""

from __future__ import annotations

import errno
import os
import sqlite3

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, did_you_mean
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.base import Tooling
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.common import COMPRESSION_EXT
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.files import (
    create_private, disk_error_message, remove_path,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.pipeline import Pipeline, Stage
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.tools import VersionProbe, compressor_argv

SQLITE_FULL = 13       # result codes of sqlite3.h (sqlite3.Error.sqlite_errorcode, Python 3.11+)
SQLITE_IOERR = 10
SQLITE_CANTOPEN = 14
SQLITE_READONLY = 8


def quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def open_ro(path):
    return sqlite3.connect('file:%s?mode=ro' % path.replace('?', '%3f').replace('#', '%23'), uri=True,
                           isolation_level=None)


def tables_of(conn):
    return [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1")]


def counts_of(conn, names):
    return {n: conn.execute('SELECT count(*) FROM %s' % quote_ident(n)).fetchone()[0] for n in names}


def integrity(path):
    conn = open_ro(path)
    try:
        rows = [r[0] for r in conn.execute('PRAGMA integrity_check').fetchall()]
        names = tables_of(conn)
        return rows, names, counts_of(conn, names)
    except sqlite3.DatabaseError as e:
        return ['%s' % e], [], {}
    finally:
        conn.close()


SQLITE_HEADER = b'SQLite format 3\x00'


def user_objects(conn):
    """Every user object of the database: tables, views, triggers and indexes (not sqlite_* internals)."""
    return [tuple(r) for r in conn.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY 1, 2")]


def check_database_file(path, what):
    """A clear DbopsError unless `path` can be a SQLite database to write: its directory exists, it is not a
    dangling symbolic link, and when it exists it is a regular file that is empty or starts with SQLite's header.
    Returns True when the file exists."""
    directory = os.path.dirname(path)
    if os.path.islink(path) and not os.path.exists(path):
        raise DbopsError('%s %s is a symbolic link to %s, which does not exist. Give the path of the database '
                         'file itself. Nothing was changed.' % (what, path, os.readlink(path)))
    if not os.path.isdir(directory):
        raise DbopsError('%s %s: the directory %s does not exist. Create it first or give another path. Nothing '
                         'was changed.' % (what, path, directory))
    if not os.path.exists(path):
        return False
    if not os.path.isfile(path):
        raise DbopsError('%s %s exists and is not a regular file. Nothing was changed.' % (what, path))
    try:
        with open(path, 'rb') as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as e:
        raise DbopsError('Cannot read %s %s: %s. Nothing was changed.' % (what.lower(), path, e))
    if head and head != SQLITE_HEADER:
        raise DbopsError('%s %s exists and is not a SQLite database (it does not start with the SQLite file '
                         'header). Give the path of a SQLite database, or of a file that does not exist yet. '
                         'Nothing was changed.' % (what, path))
    return True


class SqliteTooling(Tooling):
    engine = 'sqlite'
    whole_file = True

    def where(self, phase):
        return 'SQLite database %s, phase %s' % (self.source_identity(), phase)

    def source_identity(self):
        return os.path.abspath(os.path.expanduser(self.params['database']))

    def default_label(self):
        return os.path.splitext(os.path.basename(self.params['database']))[0]

    @staticmethod
    def layout(_fmt):
        return 'file'

    @staticmethod
    def extension(_fmt, compression):
        return '.sqlite3' + COMPRESSION_EXT[compression]

    def default_format(self):
        return 'sqlite'

    def preflight_tools(self):
        return 'sqlite3 (online backup API)', 'SQLite %s' % sqlite3.sqlite_version, {}

    def data_bytes(self, tables):  # pylint: disable=unused-argument
        # the backup is a copy of the database file (and what its WAL holds)
        path = self.source_identity()
        return sum(os.path.getsize(p) for p in (path, path + '-wal') if os.path.isfile(p))

    def all_tables(self, db=None):
        conn = (db or self.db).conn
        names = tables_of(conn)
        return [dict(name=n, table=n, rows_estimate=None) for n in names]

    def select_tables(self, tables, exclude):
        if tables or exclude:
            raise DbopsError('tables/exclude_tables are not supported for SQLite: the backup API copies the whole '
                             'database file.')
        return dict(tables=self.all_tables(), include=[], exclude=[])

    def database_facts(self):
        return dict(page_size=self.db.conn.execute('PRAGMA page_size').fetchone()[0],
                    journal_mode=self.db.conn.execute('PRAGMA journal_mode').fetchone()[0])

    def backup_to(self, path, schema_only=False, dest=None, created=False):
        """Copy the database to `path` with the backup API (one step = one consistent snapshot).

        path is created first as a new 0600 file (O_CREAT|O_EXCL|O_NOFOLLOW): the copy is private from its first
        byte and never written through a symlink or into an existing file; created=True: the caller has just
        created it that way itself (db_clone, with the source's mode and owner). dest names the directory in
        messages (a full file system is the destination's problem, not the source's)."""
        if not created:
            try:
                os.close(create_private(path))
            except OSError as e:
                raise DbopsError(disk_error_message(e, dest or os.path.dirname(path)))
        target = sqlite3.connect(path, isolation_level=None)
        try:
            if schema_only:
                for (stmt,) in self.db.conn.execute(
                        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                        "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, rowid"):
                    target.execute(stmt)
            else:
                self.db.conn.backup(target, pages=-1)
        except sqlite3.Error as e:
            code = getattr(e, 'sqlite_errorcode', None)
            code = code & 0xff if isinstance(code, int) else None  # the primary code of an extended one
            if code == SQLITE_FULL or 'full' in str(e).lower():
                raise DbopsError('Copying the SQLite database %s failed: %s. %s' % (
                    self.db.path, e, disk_error_message(OSError(errno.ENOSPC, 'ENOSPC'), dest or os.path.dirname(path))))
            if code in (SQLITE_IOERR, SQLITE_CANTOPEN, SQLITE_READONLY):
                raise DbopsError('Writing the SQLite copy of %s into %s failed: %s'
                                 % (self.db.path, dest or os.path.dirname(path), e))
            raise DbopsError('The SQLite backup API failed for %s: %s' % (self.db.path, e))
        finally:
            target.close()

    def dump_plan(self, opts, out_path, selection, snapshot=None):
        raise NotImplementedError  # SQLite does not run a dump tool

    def compress_stages(self, opts):
        if opts['compression'] == 'none':
            return [Stage('cat', ['cat'])], {}
        cargv = compressor_argv(opts['compression'], self.tool_path, opts.get('compression_level'))
        return [Stage(opts['compression'], cargv)], {opts['compression']: dict(path=cargv[0],
                                                                               version=VersionProbe(cargv[0]))}

    def check_options(self, opts):
        """Refuse in check mode what a real run refuses (no compressor). Writes nothing."""
        if opts['compression'] != 'none':
            compressor_argv(opts['compression'], self.tool_path, opts.get('compression_level'))

    def decompress_stages(self, manifest):
        if manifest.get('compression', 'none') != 'none':
            return [Stage('%s -d' % manifest['compression'],
                          compressor_argv(manifest['compression'], self.tool_path, decompress=True))]
        return [Stage('cat', ['cat'])]

    def expand(self, path, manifest, out_path):
        """Decompress a backup into out_path (a plain SQLite file)."""
        fd = create_private(out_path)
        try:
            p = Pipeline(self.decompress_stages(manifest), stdin_path=path)
            p.run_to_file(fd, os.path.dirname(out_path))
            os.fsync(fd)
        finally:
            os.close(fd)
        if not p.ok:
            remove_path(out_path)
            raise p.failure('Decompressing %s' % path)

    def verify_expanded(self, expanded, manifest, counts=None):
        checks, names, got = integrity(expanded)
        if checks != ['ok']:
            raise DbopsError('PRAGMA integrity_check of the backup failed: %s' % '; '.join(checks[:10]))
        want = sorted(t['name'] for t in manifest['tables'])
        if sorted(names) != want:
            raise DbopsError('The backup holds tables %s, the manifest lists %s.' % (sorted(names), want))
        if counts is not None:
            diff = {n: (counts.get(n), got.get(n)) for n in want if counts.get(n) != got.get(n)}
            if diff:
                raise DbopsError('Row counts differ after restoring the backup: %s' % diff)
        return got

    @staticmethod
    def check_target_name(name, prefix):
        base = os.path.basename(name)
        if not base.startswith(prefix):
            raise DbopsError('The file name %s does not start with the scratch prefix %r' % (base, prefix))

    @staticmethod
    def similar_tables(name, names):
        return did_you_mean(name, names)
