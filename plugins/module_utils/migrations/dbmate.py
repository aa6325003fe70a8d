# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""dbmate: schema_migrations (version varchar(128) primary key); a row means the migration
db/migrations/<version>_<name>.sql is applied (dbmate rollback deletes it). The version is the
file name up to the first underscore. No failed state (dbmate runs each migration in a
transaction), no checksum.
"""

from __future__ import annotations

import os
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import (
    Insert, Local, Record, Tool, list_dir,
)

FILE = re.compile(r'^([0-9]+)(_.*)?\.sql$')


class Dbmate(Tool):
    name = 'dbmate'
    table = 'schema_migrations'
    columns = ('version',)
    order_by = ('version',)
    what = 'migrations (db/migrations/<version>_<name>.sql)'
    ddl = {
        # amacneil/dbmate pkg/driver/postgres/postgres.go (CreateMigrationsTable): varchar without a length on
        # PostgreSQL (dbmate 2.x; varchar(128) is its MySQL and SQLite type)
        'postgresql': ['create table if not exists {table} (version varchar primary key)'],
        'mysql': ['create table if not exists {table} (version varchar(128) primary key)'],
        'sqlite': ['create table if not exists {table} (version varchar(128) primary key)'],
    }

    def scan(self, path, params):
        path, entries = list_dir(path, self.what)
        return [Local(m.group(1), n, os.path.join(path, n)) for n, m in ((n, FILE.match(n)) for n in entries) if m]

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


TOOL = Dbmate()
