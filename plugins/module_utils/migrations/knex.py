# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""knex: knex_migrations (id, name, batch, migration_time) + knex_migrations_lock (index, is_locked).

name is the migration's file name with its extension; a row means applied
(migrate:down deletes it), each run of migrate:latest gets the next batch.
create_table creates both tables as knex does, with the lock row is_locked = 0.
"""

from __future__ import annotations

import os

from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import (
    Expr, Insert, Local, Raw, Record, Tool, list_dir,
)

# knex's default loadExtensions
EXTENSIONS = ('.co', '.coffee', '.eg', '.iced', '.js', '.cjs', '.litcoffee', '.ls', '.ts', '.mjs', '.cts', '.mts')
NOW = {
    'postgresql': Expr('CURRENT_TIMESTAMP'),
    'mysql': Expr('CURRENT_TIMESTAMP'),
    'sqlite': Expr("CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"),
}


class Knex(Tool):
    name = 'knex'
    table = 'knex_migrations'
    columns = ('id', 'name', 'batch', 'migration_time')
    order_by = ('id',)
    what = 'migration files (.js, .ts, ...)'
    ddl = {
        # knex/knex lib/migrations/migrate/table-creator.js (types: lib/dialects/postgres/schema/pg-columncompiler.js)
        'postgresql': ['create table {table} ("id" serial primary key, "name" varchar(255), "batch" integer, '
                       '"migration_time" timestamptz)',
                       'create table {lock} ("index" serial primary key, "is_locked" integer)',
                       'insert into {lock} ("is_locked") values (0)'],
        # knex/knex lib/migrations/migrate/table-creator.js (types: lib/dialects/mysql/schema/mysql-columncompiler.js)
        'mysql': ['create table {table} (`id` int unsigned not null auto_increment primary key, `name` varchar(255), '
                  '`batch` int, `migration_time` timestamp)',
                  'create table {lock} (`index` int unsigned not null auto_increment primary key, `is_locked` int)',
                  'insert into {lock} (`is_locked`) values (0)'],
        # knex/knex lib/migrations/migrate/table-creator.js (types: dialects/sqlite3/schema/sqlite-columncompiler.js)
        'sqlite': ['create table {table} (`id` integer not null primary key autoincrement, `name` varchar(255), '
                   '`batch` integer, `migration_time` datetime)',
                   'create table {lock} (`index` integer not null primary key autoincrement, `is_locked` integer)',
                   'insert into {lock} (`is_locked`) values (0)'],
    }

    def create_ops(self, sql):
        lock = sql.ident(sql.table_name + '_lock')
        return [Raw(s.replace('{lock}', lock)) for s in self.ddl[sql.engine]]

    def scan(self, path, params):
        path, entries = list_dir(path, self.what)
        return [Local(n, n, os.path.join(path, n)) for n in entries
                if os.path.splitext(n)[1] in EXTENSIONS and not n.endswith('.d.ts')]

    def row_id(self, row):
        return row['name']

    def records(self, rows, params):
        return [Record(r['name'], 'applied') for r in rows]

    def where(self, ctx):
        return {'name': ctx.migration}

    def plan_applied(self, ctx):
        name = ctx.migration
        if ctx.local is not None:
            name = self.require_local(ctx).id
        batch = max([int(r['batch'] or 0) for r in ctx.rows] or [0]) + 1
        return [Insert([('name', name), ('batch', batch), ('migration_time', NOW[ctx.engine])])]


TOOL = Knex()
