# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prisma Migrate: _prisma_migrations, one row per attempt of a migration directory.

A row is applied when finished_at is set and rolled_back_at is not; failed when
neither is set (prisma migrate deploy stopped halfway: P3009); rows with
rolled_back_at are history only. Checksum: lowercase hex SHA-256 of
<migrations_path>/<name>/migration.sql. resolve --applied refuses a migration
that has a finished row, marks its failed rows rolled back and inserts a
finished row with a new UUID (v4); --rolled-back only touches failed rows.
Timestamps are written as Prisma's engine writes them: UTC, and on SQLite as
integer milliseconds since the epoch (quaint's DateTime on SQLite).
"""

from __future__ import annotations

import os
import uuid

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import checksums
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import (
    Expr, Insert, Local, Record, Tool, Unit, Update, Delete, list_dir, read_bytes, read_text,
)

NOW = {
    'postgresql': Expr('now()'),
    'mysql': Expr('UTC_TIMESTAMP(3)'),
    'sqlite': Expr("CAST(ROUND((julianday('now') - 2440587.5) * 86400000) AS INTEGER)"),
}


class Prisma(Tool):
    name = 'prisma'
    table = '_prisma_migrations'
    columns = ('id', 'checksum', 'finished_at', 'migration_name', 'logs', 'rolled_back_at', 'started_at',
               'applied_steps_count')
    order_by = ('started_at', 'id')
    has_checksum = True
    needs_files = True
    what = 'migration directories (<name>/migration.sql)'
    ddl = {
        'postgresql': ['CREATE TABLE {table} (\n'
                       '    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,\n'
                       '    "checksum"              VARCHAR(64) NOT NULL,\n'
                       '    "finished_at"           TIMESTAMPTZ,\n'
                       '    "migration_name"        VARCHAR(255) NOT NULL,\n'
                       '    "logs"                  TEXT,\n'
                       '    "rolled_back_at"        TIMESTAMPTZ,\n'
                       '    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),\n'
                       '    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0\n'
                       ')'],
        'mysql': ['CREATE TABLE {table} (\n'
                  '    id                      VARCHAR(36) PRIMARY KEY NOT NULL,\n'
                  '    checksum                VARCHAR(64) NOT NULL,\n'
                  '    finished_at             DATETIME(3),\n'
                  '    migration_name          VARCHAR(255) NOT NULL,\n'
                  '    logs                    TEXT,\n'
                  '    rolled_back_at          DATETIME(3),\n'
                  '    started_at              DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),\n'
                  '    applied_steps_count     INTEGER UNSIGNED NOT NULL DEFAULT 0\n'
                  ') DEFAULT CHARACTER SET utf8mb4'],
        'sqlite': ['CREATE TABLE {table} (\n'
                   '    "id"                    TEXT PRIMARY KEY NOT NULL,\n'
                   '    "checksum"              TEXT NOT NULL,\n'
                   '    "finished_at"           DATETIME,\n'
                   '    "migration_name"        TEXT NOT NULL,\n'
                   '    "logs"                  TEXT,\n'
                   '    "rolled_back_at"        DATETIME,\n'
                   '    "started_at"            DATETIME NOT NULL DEFAULT current_timestamp,\n'
                   '    "applied_steps_count"   INTEGER UNSIGNED NOT NULL DEFAULT 0\n'
                   ')'],
    }

    def scan(self, path, params):
        path, entries = list_dir(path, self.what)
        out = []
        for name in entries:
            script = os.path.join(path, name, 'migration.sql')
            if os.path.isfile(script):
                data = read_bytes(script)
                out.append(Local(name, name, script, checksums.sha256_hex(data), data=data))
        return out

    def checksum_matches(self, local, stored):
        return stored == local.checksum or checksums.prisma_matches(local.meta['data'], stored)

    def row_id(self, row):
        return row['migration_name']

    def records(self, rows, params):
        out = []
        for r in rows:
            if r['rolled_back_at'] is not None:
                continue
            out.append(Record(r['migration_name'], 'applied' if r['finished_at'] is not None else 'failed',
                              r['checksum']))
        return out

    def where(self, ctx):
        return {'migration_name': ctx.migration}

    def plan(self, ctx):
        mine = [r for r in ctx.rows if r['migration_name'] == ctx.migration]
        finished = [r for r in mine if r['finished_at'] is not None]
        failed = [r for r in mine if r['finished_at'] is None and r['rolled_back_at'] is None]
        now = NOW[ctx.engine]
        if ctx.state == 'absent':
            return [Delete(self.where(ctx))] if mine else []
        if ctx.state == 'rolled_back':
            live = [r for r in finished if r['rolled_back_at'] is None]
            if live and not failed:
                raise DbopsError(
                    'Migration %s is recorded as applied (finished at %s), not failed: prisma migrate resolve '
                    '--rolled-back only applies to failed migrations (P3012). Nothing was changed. To forget the '
                    'applied migration, use state=absent (its schema changes stay in the database).'
                    % (ctx.migration, live[-1]['finished_at']))
            return [Update({'rolled_back_at': now}, {'id': r['id']}) for r in failed]
        # applied
        if finished:
            self.check_same_checksum(ctx)
            if any(r['rolled_back_at'] is None for r in finished):
                return []
            raise DbopsError(
                'Migration %s has a finished row that is marked rolled back; prisma migrate resolve --applied '
                'refuses a migration with a finished row (P3008). Nothing was changed. Remove its history with '
                'state=absent first, then mark it applied.' % ctx.migration)
        m = self.require_local(ctx, 'Prisma stores the checksum of migration.sql')
        ops = [Update({'rolled_back_at': now}, {'id': r['id']}) for r in failed]
        ops.append(Insert([('id', str(uuid.uuid4())), ('checksum', m.checksum), ('logs', ''),
                           ('started_at', now), ('finished_at', now), ('migration_name', m.id)]))
        return ops

    # --- migrate deploy (migration_apply) -----------------------------------------------
    native_apply = True

    def tool_lock(self, engine, params):
        # prisma/prisma-engines schema-engine sql-schema-connector flavour/postgres.rs and flavour/mysql.rs
        # (acquire_lock): PostgreSQL SELECT pg_advisory_lock(72707369); MySQL SELECT GET_LOCK('prisma_migrate', 10);
        # SQLite takes none.
        if engine == 'postgresql':
            return dict(kind='pg_advisory', key=72707369, source="prisma: SELECT pg_advisory_lock(72707369)")
        if engine == 'mysql':
            return dict(kind='mysql_named', name='prisma_migrate', source="prisma: SELECT GET_LOCK('prisma_migrate', 10)")
        return None

    def deploy(self, local, engine, state, params):
        """prisma migrate deploy, per migration (prisma-engines schema-core commands/apply_migrations.rs and
        sql-schema-connector's MigrationPersistence): record_migration_started (INSERT id, checksum, started_at,
        migration_name; logs NULL, applied_steps_count 0), apply_migration_script (the whole migration.sql in
        one raw_cmd: on PostgreSQL one simple-protocol query, i.e. one implicit transaction; on MySQL a
        multi-statement query and on SQLite execute_batch, statement after statement, no transaction), then
        record_successful_step (applied_steps_count + 1) and record_migration_finished (finished_at); on a
        failure record_failed_step (logs = the error) and finished_at stays NULL (P3009 on the next deploy)."""
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.scripts import split
        pieces = split(read_text(local), engine)
        rid = str(uuid.uuid4())
        now = NOW[engine]
        before = [Insert([('id', rid), ('checksum', local.checksum), ('started_at', now),
                          ('migration_name', local.id)])]
        return Unit(local, pieces, False, before=before,
                    after=lambda ms: [Update({'applied_steps_count': Expr('applied_steps_count + 1')}, {'id': rid}),
                                      Update({'finished_at': now}, {'id': rid})],
                    failed=lambda error: [Update({'logs': error}, {'id': rid})],
                    undo=[Delete({'id': rid})],
                    note='one script%s' % (' (one implicit transaction)' if engine == 'postgresql'
                                           else ', statement by statement, no transaction'))


TOOL = Prisma()
