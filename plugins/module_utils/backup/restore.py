# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of db_restore."""

from __future__ import annotations

import os
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common as c
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.runner import (
    FORMATS, cleanup_tooling, compare_counts, tooling_for,
)


def resolve_backup(path):
    path = os.path.abspath(os.path.expanduser(path.rstrip('/')))
    if path.endswith(c.MANIFEST_SUFFIX):
        mpath = path
    else:
        mpath = c.manifest_path_for(path)
    if not os.path.exists(mpath):
        raise DbopsError('No manifest %s for the backup %s. db_restore only restores backups taken by db_backup, '
                         'whose manifest records the sha256 it checks before restoring.' % (mpath, path))
    m = c.read_manifest(mpath)
    return mpath, m, c.backup_file_of(mpath, m)


class Restore:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.engine = self.p['engine']

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

    def run(self):
        p = self.p
        started = time.monotonic()
        mpath, m, backup = resolve_backup(p['backup'])
        self.check_manifest(m, backup)
        c.check_backup_integrity(backup, m)
        target = p['database'] or m['database']
        result = dict(changed=False, backup=backup, manifest_path=mpath, database=target, source_database=m['database'],
                      sha256=m['sha256'], backup_finished_at=m['finished_at'])
        if self.engine == 'sqlite':
            return self.run_sqlite(m, backup, target, result, started)
        tools = tooling_for(self.module, None)
        admin = tools.admin()
        try:
            tools.db = admin  # server facts (version) and connection settings come from the admin session
            if not self.module.check_mode:
                tools.server_lock(admin, target)
            exists = tools.database_exists(admin, target)
            replaced = False
            if exists:
                tdb = tools.open_db(target)
                try:
                    objects = tools.database_objects(tdb)
                    if objects and not p['replace']:
                        raise DbopsError('Database %s exists and is not empty (%d objects). Set replace: true to drop '
                                         'and recreate it from the backup (after a backup of it), or restore into '
                                         'another database (target). Nothing was changed.' % (target, objects))
                    if objects and not self.module.check_mode:
                        if self.engine == 'postgresql':  # MySQL: server_lock is the maintenance lock
                            tdb.acquire_maintenance_lock(p.get('wait_for_lock') or 0)
                        others = tools.sessions(admin, target, own=tdb)
                        if others:
                            raise DbopsError('Database %s has %d other session(s) (%s); replace drops the database, '
                                             'which needs them gone. Stop the application first. Nothing was changed.'
                                             % (target, len(others), '; '.join(str(tuple(o)) for o in others[:5])))
                    replaced = bool(objects)
                finally:
                    tdb.close()
            result['replaced'] = replaced
            if self.module.check_mode:
                result.update(changed=True, msg='Would restore %s into %s%s (check mode).'
                              % (backup, target, ', dropping it first' if replaced else ''))
                return result
            if replaced:
                tools.drop_database(admin, target)
            if not exists or replaced:
                tools.create_database(admin, target, m)
            stages, stdin = tools.restore_stages(backup, m, target, jobs=p['jobs'] or 1, no_owner=p['no_owner'])
            pipe = c.Pipeline(stages, redact=admin.redact, stdin_path=stdin)
            pipe.run()
            if not pipe.ok:
                err = pipe.failure('Restoring %s into %s' % (backup, target))
                note = ''
                if not exists:
                    tools.drop_database(admin, target)
                    note = ' The database %s, created for this restore, was dropped again.' % target
                elif self.engine == 'mysql' or m['format'] == 'directory':
                    tools.drop_database(admin, target)
                    tools.create_database(admin, target, m)
                    note = ' The partly restored database %s was emptied (dropped and recreated).' % target
                else:
                    note = ' The restore ran in one transaction, so nothing of it was kept.'
                raise DbopsError('%s%s' % (err, note), **err.details)
            tdb = tools.open_db(target)
            try:
                tables = tools.all_tables(tdb) if self.engine == 'postgresql' else tools.all_tables(tdb, database=target)
                counts = tools.exact_counts(tdb, tables)
            finally:
                tdb.close()
            result.update(changed=True, tables=[dict(name=k, rows=v) for k, v in counts.items()], row_counts=counts,
                          duration=round(time.monotonic() - started, 3), queries=admin.queries)
            if m.get('row_counts'):
                problems = compare_counts(m['row_counts'], counts)
                result['matches_backup_counts'] = not problems
                if problems:
                    self.module.warn('Row counts differ from the counts recorded at backup time: %s'
                                     % '; '.join(problems[:10]))
            result['msg'] = 'Restored %s into %s: %d tables, %d rows in %.1fs.' % (
                os.path.basename(backup), target, len(counts), sum(counts.values()), result['duration'])
            return result
        finally:
            cleanup_tooling(tools)
            admin.close()

    def run_sqlite(self, m, backup, target, result, started):
        from ansible_collections.dbops.maintenance.plugins.module_utils.backup.sqlite import (
            SqliteTooling, integrity)
        import sqlite3
        target = os.path.abspath(os.path.expanduser(target))
        result['database'] = target
        tools = SqliteTooling(self.module, None)
        replaced = False
        if os.path.exists(target):
            _checks, names, _counts = integrity(target)
            if names and not self.p['replace']:
                raise DbopsError('SQLite database %s exists and is not empty (%d tables). Set replace: true to replace '
                                 'it with the backup, or give another target. Nothing was changed.'
                                 % (target, len(names)))
            replaced = bool(names)
        result['replaced'] = replaced
        if self.module.check_mode:
            result.update(changed=True, msg='Would restore %s into %s (check mode).' % (backup, target))
            return result
        directory = os.path.dirname(target)
        tmp = c.tmp_name(directory, os.path.basename(target))
        try:
            tools.expand(backup, m, tmp)
            counts = tools.verify_expanded(tmp, m)
            if os.path.exists(target):
                conn = sqlite3.connect(target, isolation_level=None)
                try:
                    conn.execute('PRAGMA wal_checkpoint(TRUNCATE)')
                finally:
                    conn.close()
            os.rename(tmp, target)
            for suffix in ('-wal', '-shm', '-journal'):
                c.remove_path(target + suffix)
            c.fsync_dir(directory)
        except BaseException:
            c.remove_path(tmp)
            raise
        result.update(changed=True, tables=[dict(name=k, rows=v) for k, v in counts.items()], row_counts=counts,
                      duration=round(time.monotonic() - started, 3),
                      msg='Restored %s into %s: %d tables.' % (os.path.basename(backup), target, len(counts)))
        return result
