# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of db_restore: never lose the target.

1. Everything that can be checked is checked before anything is touched: the manifest (every field, see
   manifest.validate_manifest), the backup's size and sha256, the decompressor, the database facts against the
   server's catalog, the target (empty, or replace: true), the free space for the side copy.
2. The backup is restored into a side database (``dbops_restore_<target>_<ts>``; SQLite: a private 0600 file
   beside the target), and the side copy is checked: the manifest's tables, exactly, and its exact row counts
   when the manifest has them.
3. Only then is the side copy swapped in (per engine: the Tooling's swap_in, or run_sqlite). The
   replaced database is kept as ``<target>_dbops_replaced_<ts>`` (keep_replaced), marked as this collection's.

Any failure before the swap drops the side copy and leaves the target as it was; a failure inside the swap
undoes the steps already done. DBOPS_TEST_FAIL_AT=<stage> (test-only, read only when set) makes the module fail
at a stage, to test exactly that.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import sqlite3
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common as c
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import files as fl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import manifest as mf
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import pipeline as pl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.base import (
    MARKER_KEY, Tooling, fail_at, parse_marker,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.runner import FORMATS, compare_counts

STAGES = ('side_restored', 'checked', 'properties', 'between_renames', 'swapped')
# the side copy needs about the backup's size once expanded: compressed dumps are counted this many times
EXPANSION = {'none': 2, 'gzip': 6, 'lz4': 4, 'zstd': 6}  # SQLite uncompressed: 1 (the file itself)


def bounded_name(prefix, middle, suffix, limit):
    """prefix + middle + suffix within `limit` bytes (UTF-8): a long middle is cut and given a short hash."""
    name = prefix + middle + suffix
    if len(name.encode('utf-8')) <= limit:
        return name
    digest = '_' + hashlib.sha256(middle.encode('utf-8')).hexdigest()[:8]
    room = limit - len((prefix + suffix + digest).encode('utf-8'))
    cut = middle.encode('utf-8')[:max(room, 0)].decode('utf-8', 'ignore')
    return prefix + cut + digest + suffix


def resolve_backup(path):
    path = os.path.abspath(os.path.expanduser(path.rstrip('/')))
    if path.endswith(c.MANIFEST_SUFFIX):
        mpath = path
    else:
        mpath = mf.manifest_path_for(path)
    if not os.path.exists(mpath):
        raise DbopsError('No manifest %s for the backup %s. db_restore only restores backups taken by db_backup, '
                         'whose manifest records the sha256 it checks before restoring.' % (mpath, path))
    m = mf.validate_manifest(mf.read_manifest(mpath), mpath)
    return mpath, m, mf.backup_file_of(mpath, m)


class Restore:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.engine = self.p['engine']
        self.steps = []
        self.now = c.utcnow()
        self.ts = c.timestamp_name(self.now)

    def check_manifest(self, m, backup):
        if m.get('engine') != self.engine:
            raise DbopsError('The backup %s is a %s backup; it cannot be restored with engine %s.'
                             % (backup, m.get('engine'), self.engine))
        if self.p.get('format') and self.p['format'] != m.get('format'):
            raise DbopsError('The backup %s is in format %s, not %s as the task says.'
                             % (backup, m.get('format'), self.p['format']))
        if self.engine in FORMATS and m.get('format') not in FORMATS[self.engine]:
            raise DbopsError('The backup %s has format %s, which %s cannot restore.'
                             % (backup, m.get('format'), self.engine))

    def step(self, text):
        self.steps.append(text)

    # --- checks shared by every engine ---------------------------------------------------------------
    def check_side(self, got, m):
        """The side copy holds the manifest's tables, exactly, with its exact row counts (when recorded)."""
        want = sorted(t['name'] for t in m['tables'])
        have = sorted(got)
        if have != want:
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            raise DbopsError('The restored copy does not hold the tables the manifest lists (missing: %s; not in '
                             'the manifest: %s).' % (', '.join(missing[:20]) or 'none', ', '.join(extra[:20]) or 'none'))
        if m.get('row_counts'):
            problems = compare_counts(m['row_counts'], got)
            if problems:
                raise DbopsError('The restored copy differs from the row counts recorded at backup time: %s.'
                                 % '; '.join(problems[:20]))
            return True
        return None

    def space_check(self, free_dir, need, what):
        """Refuse when the file system of free_dir has less than `need` bytes free. Returns what was checked."""
        try:
            st = os.statvfs(free_dir)
        except OSError as e:
            return dict(checked=False, why='cannot stat %s: %s' % (free_dir, e))
        free = st.f_bavail * st.f_frsize
        if free < need:
            raise DbopsError('Not enough free space for the side copy of the restore: %s needs about %s, the file '
                             'system of %s has %s free. Free space there first. Nothing was changed.'
                             % (what, fl.human_size(need), free_dir, fl.human_size(free)))
        return dict(checked=True, directory=free_dir, needed=need, free=free)

    # --- the run -------------------------------------------------------------------------------------
    def run(self):
        p = self.p
        started = time.monotonic()
        mpath, m, backup = resolve_backup(p['backup'])
        self.check_manifest(m, backup)
        target = p['database'] or m['database']
        result = dict(changed=False, backup=backup, manifest_path=mpath, database=target, source_database=m['database'],
                      sha256=m['sha256'], backup_finished_at=m['finished_at'], replaced=None)
        tools = Tooling.for_module(self.module, None)
        if tools.whole_file:
            return self.run_sqlite(m, backup, target, result, started)
        tools.decompress_stages(m)  # the decompressor is there (or a clear error) before anything is touched
        mf.check_backup_integrity(backup, m)
        admin = tools.admin()
        tdb = None
        try:
            tools.db = admin  # server facts (version) and connection settings come from the admin session
            tools.check_facts(admin, m.get('database_facts') or {})
            if not self.module.check_mode:
                tools.server_lock(admin, target)
            exists = tools.database_exists(admin, target)
            objects = 0
            if exists:
                tdb = tools.open_db(target)
                objects = tools.database_objects(tdb)
                if objects and not p['replace']:
                    raise DbopsError('Database %s exists and is not empty (%d objects). Set replace: true to replace '
                                     'it with the backup (the current one is kept as %s_dbops_replaced_<time>), or '
                                     'restore into another database (target). Nothing was changed.'
                                     % (target, objects, target))
                tools.guard_replaced(admin, target, tdb, objects)
            limit = tools.name_limit
            side = self.free_name(lambda n: bounded_name('dbops_restore_', target, '_' + self.ts + n, limit),
                                  lambda name: tools.database_exists(admin, name))
            replaced = self.free_name(lambda n: bounded_name('', target, '_dbops_replaced_' + self.ts + n, limit),
                                      lambda name: tools.database_exists(admin, name)) if exists else None
            result['space'] = self.server_space(tools, admin, m, target if exists else None)
            self.step('restore %s into the side database %s' % (os.path.basename(backup), side))
            self.step('check %s: tables %s%s' % (side, ', '.join(sorted(t['name'] for t in m['tables'])[:20]),
                                                 ' and the manifest\'s exact row counts' if m.get('row_counts') else ''))
            if exists:
                self.plan_swap(tools, target, side, replaced)
            else:
                self.step('rename %s to %s' % (side, target))
            if self.module.check_mode:
                result.update(changed=True, steps=self.steps, replaced=replaced if objects else None,
                              msg='Would restore %s into %s through the side database %s%s (check mode: nothing was '
                                  'changed).' % (backup, target, side, ', keeping the current one as %s' % replaced
                                                 if objects else ''))
                return result
            counts = self.restore_side(tools, admin, m, backup, side, target, exists)
            if exists:
                tools.swap_in(admin, target, side, replaced, tdb, self.now)
                if p['keep_replaced'] and objects:
                    result['replaced'] = replaced
                    result['pruned_replaced'] = self.retention(tools, admin, target, protect=replaced)
                else:
                    tools.drop_database(admin, replaced, force=True)
            else:
                tools.move_in(admin, side, target)
            result.update(changed=True, tables=[dict(name=k, rows=v) for k, v in counts.items()], row_counts=counts,
                          duration=round(time.monotonic() - started, 3), queries=admin.queries, steps=self.steps,
                          matches_backup_counts=True if m.get('row_counts') else None)
            result['msg'] = 'Restored %s into %s: %d tables, %d rows in %.1fs%s.' % (
                os.path.basename(backup), target, len(counts), sum(counts.values()), result['duration'],
                '; the replaced database is kept as %s' % result['replaced'] if result['replaced'] else '')
            return result
        finally:
            if tdb is not None:
                tdb.close()
            tools.cleanup()
            admin.close()

    @staticmethod
    def free_name(make, taken):
        """make('') or, when that name is taken, make('_1'), make('_2'), ..."""
        n = 0
        while True:
            name = make('_%d' % n if n else '')
            if not taken(name):
                return name
            n += 1

    def server_space(self, tools, admin, m, target):
        """Free space for the side copy, checked only where the module can see the server's data directory
        (the server runs on this host and tells its data directory): about the backup's size (times EXPANSION
        for compressed dumps) or the target's current size, whichever is larger."""
        host = self.p.get('login_host') or 'localhost'
        if host not in ('localhost', '127.0.0.1', '::1') and not self.p.get('login_unix_socket'):
            return dict(checked=False, why='the server is not on this host (%s)' % host)
        datadir = tools.data_directory(admin)
        if not datadir or not os.path.isdir(datadir):
            return dict(checked=False, why='the server\'s data directory is not readable from here')
        need = max(m['size'] * EXPANSION[m.get('compression') or 'none'],
                   tools.database_size(admin, target) if target else 0)
        return self.space_check(datadir, need, 'the server\'s data directory')

    def plan_swap(self, tools, target, side, replaced):
        for text in tools.swap_plan(target, side, replaced):
            self.step(text)
        if not self.p['keep_replaced']:
            self.step('DROP DATABASE %s (keep_replaced: false)' % replaced)

    # --- side copy -----------------------------------------------------------------------------------
    def restore_side(self, tools, admin, m, backup, side, target, exists):
        tools.create_database(admin, side, m)
        try:
            stages, stdin = tools.restore_stages(backup, m, side, jobs=self.p['jobs'] or 1, no_owner=self.p['no_owner'])
            pipe = pl.Pipeline(stages, redact=admin.redact, stdin_path=stdin, stall_timeout=self.p.get('stall_timeout'),
                               where=tools.where('restore into %s' % side),
                               server_busy=lambda: tools.scratch_busy(admin, side))
            pipe.run()
            if not pipe.ok:
                err = pipe.failure('Restoring %s into the side database %s' % (backup, side))
                raise DbopsError('%s The side database %s, created for this restore, was dropped again; %s.'
                                 % (err, side, 'the target %s was not touched' % target if exists else
                                    'nothing was created'), **err.details)
            fail_at('side_restored')
            sdb = tools.open_db(side)
            try:
                tables = tools.tables_of(sdb, side)
                counts = tools.exact_counts(sdb, tables)
            finally:
                sdb.close()
            try:
                self.check_side(counts, m)
                fail_at('checked')
            except DbopsError as e:
                raise DbopsError('%s The side database %s was dropped again; the target %s was not touched.'
                                 % (e, side, target))
            return counts
        except BaseException:
            try:
                tools.drop_database(admin, side, force=True)
            except Exception as e:  # pylint: disable=broad-except
                self.module.warn('Could not drop the side database %s: %s' % (side, e))
            raise

    # --- retention of replaced copies ----------------------------------------------------------------
    def retention(self, tools, admin, target, protect):
        keep = self.p.get('keep_replaced_last')
        if keep is None:
            return []
        ours = []
        for name, text in tools.list_marked(admin):
            data = parse_marker(text, 'replaced')
            if data and data.get('target') == target and name != protect:
                ours.append((data.get('at') or '', name))
        ours.sort(reverse=True)
        doomed = [name for _at, name in ours[max(keep - 1, 0):]]
        for name in doomed:
            tools.drop_database(admin, name, force=True)
        return doomed

    # --- SQLite --------------------------------------------------------------------------------------
    def run_sqlite(self, m, backup, target, result, started):
        from ansible_collections.dbops.maintenance.plugins.module_utils.backup.sqlite import (
            SqliteTooling, check_database_file, open_ro, user_objects)
        target = os.path.abspath(os.path.expanduser(target))
        result['database'] = target
        tools = SqliteTooling(self.module, None)
        exists = check_database_file(target, 'The restore target')
        tools.decompress_stages(m)
        mf.check_backup_integrity(backup, m)
        objects = []
        if exists and os.path.getsize(target) > 0:
            try:
                conn = open_ro(target)
                try:
                    objects = user_objects(conn)
                finally:
                    conn.close()
            except sqlite3.DatabaseError as e:
                raise DbopsError('The restore target %s cannot be read as a SQLite database: %s. Nothing was '
                                 'changed.' % (target, e))
            if objects and not self.p['replace']:
                raise DbopsError('SQLite database %s exists and is not empty (%d objects: %s). Set replace: true to '
                                 'replace it with the backup, or give another target. Nothing was changed.'
                                 % (target, len(objects), ', '.join('%s %s' % o for o in objects[:5])))
        directory = os.path.dirname(target)
        # the expanded copy (a SQLite backup is the file itself: x1 uncompressed), the kept replaced copy, and the
        # rollback journal of the backup-API write into the live file (up to the target's size)
        current = os.path.getsize(target) if exists else 0
        need = m['size'] * (EXPANSION[m.get('compression') or 'none'] if m.get('compression', 'none') != 'none' else 1) \
            + current * (2 if objects and self.p['keep_replaced'] else 1)
        result['space'] = self.space_check(directory, need, 'the side copy of %s' % target)
        replaced = self.free_name(lambda n: '%s_dbops_replaced_%s%s' % (target, self.ts, n),
                                  lambda p: os.path.lexists(p) or os.path.lexists(p + SIDE_RECORD)) if objects else None
        self.step('expand %s into a private file (0600) in %s and check it (integrity_check, tables%s)'
                  % (os.path.basename(backup), directory, ', row counts' if m.get('row_counts') else ''))
        if objects and self.p['keep_replaced']:
            self.step('copy %s to %s (backup API)' % (target, replaced))
        self.step('copy the checked file into %s (backup API, one transaction: owner, mode and inode stay)' % target
                  if exists else 'rename the checked file to %s' % target)
        if self.module.check_mode:
            result.update(changed=True, steps=self.steps, replaced=replaced if self.p['keep_replaced'] else None,
                          msg='Would restore %s into %s (check mode: nothing was changed).' % (backup, target))
            return result
        tmp = os.path.join(directory, '.dbops-restore-%s-%s' % (secrets.token_hex(8), os.path.basename(target)))
        kept = None
        try:
            tools.expand(backup, m, tmp)
            fail_at('side_restored')
            counts = tools.verify_expanded(tmp, m, m.get('row_counts'))
            fail_at('checked')
            if not exists:
                os.rename(tmp, target)
            else:
                st = os.stat(target)
                if objects and self.p['keep_replaced']:
                    kept = replaced
                    self.sqlite_copy(target, replaced, st)
                    self.write_side_record(replaced, target)
                fail_at('between_renames')
                self.sqlite_copy(tmp, target, None)
                fl.remove_path(tmp)
            fl.fsync_dir(directory)
        except BaseException as e:
            fl.remove_path(tmp)
            if kept:
                fl.remove_path(kept)
                fl.remove_path(kept + SIDE_RECORD)
            if isinstance(e, DbopsError):
                raise DbopsError('%s Nothing was replaced: %s is as it was.' % (e, target), **e.details)
            if isinstance(e, (OSError, sqlite3.Error)):
                raise DbopsError('Restoring into %s failed: %s. Nothing was replaced: %s is as it was.'
                                 % (target, e, target))
            raise
        result['replaced'] = kept
        if kept:
            result['pruned_replaced'] = self.sqlite_retention(target, kept)
        result.update(changed=True, tables=[dict(name=k, rows=v) for k, v in counts.items()], row_counts=counts,
                      duration=round(time.monotonic() - started, 3), steps=self.steps,
                      msg='Restored %s into %s: %d tables%s.' % (
                          os.path.basename(backup), target, len(counts),
                          '; the replaced file is kept as %s' % kept if kept else ''))
        return result

    @staticmethod
    def sqlite_copy(source, dest, st):
        """Copy with the backup API. dest is created first (O_EXCL, 0600 or the mode/owner of st) when st is given,
        else it is the live file: written in one transaction, it keeps its inode, owner and mode."""
        if st is not None:
            fl.create_like(dest, st)
        src = sqlite3.connect('file:%s?mode=ro' % source.replace('?', '%3f').replace('#', '%23'), uri=True)
        try:
            dst = sqlite3.connect(dest, timeout=30)
            try:
                src.backup(dst, pages=-1)
            finally:
                dst.close()
        finally:
            src.close()

    @staticmethod
    def write_side_record(path, target):
        st = os.stat(path)
        rec = dict({MARKER_KEY: 'replaced', 'target': target, 'at': c.iso(c.utcnow())}, dev=st.st_dev, ino=st.st_ino)
        fd = os.open(path + SIDE_RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(rec, f)

    def sqlite_retention(self, target, protect):
        keep = self.p.get('keep_replaced_last')
        if keep is None:
            return []
        directory, base = os.path.split(target)
        ours = []
        for name in os.listdir(directory):
            if not (name.startswith(base + '_dbops_replaced_') and name.endswith(SIDE_RECORD)):
                continue
            path = os.path.join(directory, name[:-len(SIDE_RECORD)])
            rec = read_side_record(path, 'replaced')
            if rec and rec.get('target') == target and path != protect:
                ours.append((rec.get('at') or '', path))
        ours.sort(reverse=True)
        doomed = [path for _at, path in ours[max(keep - 1, 0):]]
        for path in doomed:
            for suffix in ('', '-wal', '-shm', '-journal', SIDE_RECORD):
                fl.remove_path(path + suffix)
        return doomed


SIDE_RECORD = '.dbops.json'


def read_side_record(path, kind):
    """The side record of a SQLite file this collection made (kind 'clone' or 'replaced'), or None when there is
    none or it names another file (another inode)."""
    try:
        with open(path + SIDE_RECORD) as f:
            rec = json.load(f)
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get(MARKER_KEY) != kind:
        return None
    if rec.get('dev') != st.st_dev or rec.get('ino') != st.st_ino:
        return None
    return rec
