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

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import (
    Insert, Local, Record, Tool, Unit, list_dir, read_text,
)

FILE = re.compile(r'^([0-9]+)(_.*)?\.sql$')
# amacneil/dbmate pkg/dbmate/migration.go (parseMigrationContents): the sections start at lines
# '-- migrate:up' / '-- migrate:down', options follow the marker on the same line (transaction:false)
UP = re.compile(r'(?m)^--\s*migrate:up(.*)$')
DOWN = re.compile(r'(?m)^--\s*migrate:down(.*)$')


def parse_up(text):
    """(up section, transaction) of a dbmate migration, or DbopsError when it has no up section."""
    up = UP.search(text)
    if up is None:
        raise DbopsError('dbmate requires each migration to define an up block with \'-- migrate:up\'')
    down = DOWN.search(text, up.end())
    body = text[up.end() + 1:down.start() if down else len(text)]
    options = dict(o.split(':', 1) for o in up.group(1).split() if ':' in o)
    return body, options.get('transaction', 'true').lower() != 'false'


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

    # --- dbmate up (migration_apply) ------------------------------------------------------
    native_apply = True

    def deploy(self, local, engine, state, params):
        """dbmate up, per migration (amacneil/dbmate pkg/dbmate/db.go Migrate): the up section is executed with
        one Exec (PostgreSQL: one simple-protocol query; MySQL: multiStatements; SQLite: statement after
        statement) inside a transaction, unless the marker says transaction:false, and InsertMigration(version)
        runs in the same transaction. No lock, no failed state: a failed migration leaves no row (on MySQL its
        DDL before the failing statement is committed by the server)."""
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.scripts import split
        try:
            body, transaction = parse_up(read_text(local))
        except DbopsError as e:
            raise DbopsError('%s: %s. Nothing was run.' % (local.name, e))
        return Unit(local, split(body, engine), transaction, inside=lambda ms: [Insert([('version', local.id)])],
                    note='transaction' if transaction else 'transaction:false')


TOOL = Dbmate()
