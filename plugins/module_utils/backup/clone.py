# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The flow of db_clone."""

from __future__ import annotations

import json
import os
import secrets
import time

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import common as c
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import files as fl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup import pipeline as pl
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.base import (
    MARKER_KEY, Tooling, marker_text, parse_marker,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.backup.restore import SIDE_RECORD, read_side_record


class Clone:
    def __init__(self, module, adapter):
        self.module = module
        self.p = module.params
        self.db = adapter
        self.tools = Tooling.for_module(module, adapter)

    def marker(self):
        return marker_text('clone', self.p['name'], c.iso(c.utcnow()), source=self.p['database'])

    def run(self):
        p = self.p
        prefix = p['scratch_prefix']
        name = p['name']
        if not prefix:
            raise DbopsError('scratch_prefix cannot be empty: it is what stops db_clone from dropping a real database.')
        if self.tools.whole_file:
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
                if exists and not parse_marker(self.tools.marker_comment(admin, name), 'clone'):
                    raise DbopsError('%s was not created by db_clone (it has no dbops.maintenance clone marker), so '
                                     'state=absent will not drop it, whatever scratch_prefix says. Nothing was '
                                     'changed. Drop it by hand if it really is a scratch copy.' % name)
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
                self.tools.set_comment(admin, name, self.marker())
                stages, tools = self.tools.clone_stages(p['database'], name, p['schema_only'], no_owner=p['no_owner'])
                pipe = pl.Pipeline(stages, redact=self.db.redact, stall_timeout=p.get('stall_timeout'),
                                   where=self.tools.where('copy into %s' % name),
                                   server_busy=lambda: self.tools.scratch_busy(admin, name))
                pipe.run()
                if not pipe.ok:
                    raise pipe.failure('Copying %s to %s' % (p['database'], name))
            except BaseException:
                self.tools.drop_database(admin, name, force=True)
                raise
            tdb = self.tools.open_db(name)
            try:
                tables = self.tools.tables_of(tdb, name)
                tables = [t for t in tables if t['name'] != getattr(self.tools, 'MARKER_TABLE', None)]
                counts = self.tools.exact_counts(tdb, tables)
            finally:
                tdb.close()
            result.update(changed=True, tables=[dict(name=k, rows=v) for k, v in counts.items()], tools=tools,
                          duration=round(time.monotonic() - started, 3), queries=admin.queries,
                          msg='Copied %s to %s: %d tables.' % (p['database'], name, len(counts)))
            return result
        finally:
            self.tools.cleanup()
            admin.close()

    def run_sqlite(self, name, prefix):
        from ansible_collections.dbops.maintenance.plugins.module_utils.backup.sqlite import (
            check_database_file, integrity)
        target = os.path.abspath(os.path.expanduser(name))
        if not os.path.basename(target).startswith(prefix):
            raise DbopsError('%s does not start with the scratch prefix %r. db_clone only creates and drops files '
                             'whose name says they are scratch copies.' % (os.path.basename(target), prefix))
        if target == os.path.abspath(self.db.path):
            raise DbopsError('name must differ from database (the source).')
        result = dict(changed=False, name=target, source=self.db.path, state=self.p['state'])
        exists = check_database_file(target, 'The scratch copy')
        if self.p['state'] == 'absent':
            if exists and not read_side_record(target, 'clone'):
                raise DbopsError('%s was not created by db_clone (no %s side record naming this file), so '
                                 'state=absent will not remove it. Nothing was changed.' % (target, SIDE_RECORD))
            if exists and not self.module.check_mode:
                for suffix in ('', '-wal', '-shm', '-journal', SIDE_RECORD):
                    fl.remove_path(target + suffix)
            result['changed'] = exists
            return result
        if exists:
            result['msg'] = 'The scratch copy %s exists already.' % target
            return result
        if self.module.check_mode:
            result.update(changed=True)
            return result
        st = os.stat(self.db.path)
        directory = os.path.dirname(target)
        tmp = os.path.join(directory, '.dbops-clone-%s-%s' % (secrets.token_hex(8), os.path.basename(target)))
        try:
            fl.create_like(tmp, st)  # the source's mode (0600 from the start when the source is 0600) and owner
            self.tools.backup_to(tmp, schema_only=self.p['schema_only'], created=True)
            os.rename(tmp, target)
            rst = os.stat(target)
            rec = {MARKER_KEY: 'clone', 'target': target, 'source': self.db.path, 'at': c.iso(c.utcnow()),
                   'dev': rst.st_dev, 'ino': rst.st_ino}
            fd = os.open(target + SIDE_RECORD, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600)
            with os.fdopen(fd, 'w') as f:
                json.dump(rec, f)
        except BaseException:
            fl.remove_path(tmp)
            raise
        _checks, _names, counts = integrity(target)
        result.update(changed=True, tables=[dict(name=k, rows=v) for k, v in counts.items()])
        return result
