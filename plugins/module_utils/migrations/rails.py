# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rails (Active Record): schema_migrations (version); a row means the migration
db/migrate/<version>_<name>.rb is applied (db:migrate:down deletes it). No failed state, no checksum.
"""

from __future__ import annotations

import os
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import (
    Insert, Local, Record, Tool, list_dir,
)

FILE = re.compile(r'^([0-9]+)_([_a-z0-9]*)\.?([_a-z0-9]*)?\.rb$')


class Rails(Tool):
    name = 'rails'
    table = 'schema_migrations'
    columns = ('version',)
    order_by = ('version',)
    what = 'migrations (db/migrate/<version>_<name>.rb)'
    ddl = {
        # rails/rails activerecord/lib/active_record/schema_migration.rb (create_table)
        'postgresql': ['CREATE TABLE {table} ("version" character varying NOT NULL PRIMARY KEY)'],
        # rails/rails activerecord/lib/active_record/schema_migration.rb (create_table)
        'mysql': ['CREATE TABLE {table} (`version` varchar(255) NOT NULL PRIMARY KEY)'],
        # rails/rails activerecord/lib/active_record/schema_migration.rb (create_table)
        'sqlite': ['CREATE TABLE {table} ("version" varchar NOT NULL PRIMARY KEY)'],
    }

    def scan(self, path, params):
        path, entries = list_dir(path, self.what)
        out = [Local(m.group(1), n, os.path.join(path, n)) for n, m in ((n, FILE.match(n)) for n in entries) if m]
        return sorted(out, key=lambda m: int(m.id))

    def sort_key(self, mid):
        return int(mid) if str(mid).isdigit() else -1

    def row_id(self, row):
        return row['version']

    def records(self, rows, params):
        return [Record(r['version'], 'applied') for r in rows]

    def where(self, ctx):
        return {'version': ctx.migration}

    def plan_applied(self, ctx):
        version = ctx.migration
        if ctx.local is not None:
            version = self.require_local(ctx).id
        return [Insert([('version', version)])]


TOOL = Rails()
