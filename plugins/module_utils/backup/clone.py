# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of db_clone."""

from __future__ import annotations

import os
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common as c
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.runner import (
    cleanup_tooling, tooling_for,
)


class Clone:
    def __init__(self, module, adapter):
        self.module = module
        self.p = module.params
        self.engine = self.p['engine']
        self.db = adapter
        self.tools = tooling_for(module, adapter)

    def run(self):
        p = self.p
        prefix = p['scratch_prefix']
        name = p['name']
        if not prefix:
            raise DbopsError('scratch_prefix cannot be empty: it is what stops db_clone from dropping a real database.')
        if self.engine == 'sqlite':
            return self.run_sqlite(name, prefix)
        if not name.startswith(prefix):
            raise DbopsError('%s does not start with the scratch prefix %r. db_clone only creates and drops databases '
                             'whose name says they are scratch copies; name it %s%s.' % (name, prefix, prefix, name))
        if name == p['database']:
            raise DbopsError('name must differ from database (the source).')
        admin = self.tools.admin()
        result = dict(changed=False, name=name, source=p['database'], state=p['state'])
        try:
            exists = self.tools.database_exists(admin, name)
            if p['state'] == 'absent':
                if exists and not self.module.check_mode:
                    self.tools.server_lock(admin, name)
                    self.tools.drop_database(admin, name, force=True)
                result.update(changed=exists, queries=admin.queries)
                return result
            if exists:
                result['msg'] = 'The scratch copy %s exists already; drop it with state=absent to make a fresh one.' % name
                return result
            if self.module.check_mode:
                result.update(changed=True, msg='Would copy %s to %s (check mode).' % (p['database'], name))
                return result
            self.tools.server_lock(admin, name)
            started = time.monotonic()
            self.tools.create_database(admin, name, dict(database_facts=self.tools.database_facts()))
            try:
                stages, tools = self.tools.clone_stages(p['database'], name, p['schema_only'], no_owner=p['no_owner'])
                pipe = c.Pipeline(stages, redact=self.db.redact)
                pipe.run()
                if not pipe.ok:
                    raise pipe.failure('Copying %s to %s' % (p['database'], name))
            except BaseException:
                self.tools.drop_database(admin, name, force=True)
                raise
            tdb = self.tools.open_db(name)
            try:
                tables = self.tools.all_tables(tdb) if self.engine == 'postgresql' else \
                    self.tools.all_tables(tdb, database=name)
                counts = self.tools.exact_counts(tdb, tables)
            finally:
                tdb.close()
            result.update(changed=True, tables=[dict(name=k, rows=v) for k, v in counts.items()], tools=tools,
                          duration=round(time.monotonic() - started, 3), queries=admin.queries,
                          msg='Copied %s to %s: %d tables.' % (p['database'], name, len(counts)))
            return result
        finally:
            cleanup_tooling(self.tools)
            admin.close()

    def run_sqlite(self, name, prefix):
        from ansible_collections.dbops.maintenance.plugins.module_utils.backup.sqlite import integrity
        target = os.path.abspath(os.path.expanduser(name))
        if not os.path.basename(target).startswith(prefix):
            raise DbopsError('%s does not start with the scratch prefix %r. db_clone only creates and drops files '
                             'whose name says they are scratch copies.' % (os.path.basename(target), prefix))
        if target == os.path.abspath(self.db.path):
            raise DbopsError('name must differ from database (the source).')
        result = dict(changed=False, name=target, source=self.db.path, state=self.p['state'])
        exists = os.path.exists(target)
        if self.p['state'] == 'absent':
            if exists and not self.module.check_mode:
                for suffix in ('', '-wal', '-shm', '-journal'):
                    c.remove_path(target + suffix)
            result['changed'] = exists
            return result
        if exists:
            result['msg'] = 'The scratch copy %s exists already.' % target
            return result
        if self.module.check_mode:
            result.update(changed=True)
            return result
        tmp = c.tmp_name(os.path.dirname(target), os.path.basename(target))
        try:
            self.tools.backup_to(tmp, schema_only=self.p['schema_only'])
            os.rename(tmp, target)
        except BaseException:
            c.remove_path(tmp)
            raise
        _checks, _names, counts = integrity(target)
        result.update(changed=True, tables=[dict(name=k, rows=v) for k, v in counts.items()])
        return result
