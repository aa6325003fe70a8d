# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""sqlx: _sqlx_migrations (version, description, installed_on, success, checksum, execution_time).

Files <version>_<description>.sql (or .up.sql / .down.sql); description is the
name with underscores as spaces; checksum = the 48 bytes of SHA-384 of the
file. sqlx refuses to run while a row has success = false ("migration N is
partially applied; fix and remove row from _sqlx_migrations table"), so
rolling back a failed migration removes that row; marking it applied replaces
it with a successful row. sqlx inserts its rows with execution_time -1
before it measures the time.
"""

from __future__ import annotations

import os
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import checksums
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import (
    Delete, Insert, IntegerVersions, Local, Record, Tool, Unit, Update, list_dir, read_bytes, read_text,
)

FILE = re.compile(r'^([0-9]+)_(.*?)(\.up|\.down)?\.sql$')


class Sqlx(IntegerVersions, Tool):
    name = 'sqlx'
    table = '_sqlx_migrations'
    columns = ('version', 'description', 'installed_on', 'success', 'checksum', 'execution_time')
    order_by = ('version',)
    has_checksum = True
    needs_files = True
    what = 'migrations (<version>_<description>.sql)'
    ddl = {
        # launchbadge/sqlx sqlx-postgres/src/migrate.rs (verified against sqlx earlier; not re-read here)
        'postgresql': ['CREATE TABLE IF NOT EXISTS {table} (\n'
                       '    version BIGINT PRIMARY KEY,\n'
                       '    description TEXT NOT NULL,\n'
                       '    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),\n'
                       '    success BOOLEAN NOT NULL,\n'
                       '    checksum BYTEA NOT NULL,\n'
                       '    execution_time BIGINT NOT NULL\n'
                       ')'],
        # launchbadge/sqlx sqlx-mysql/src/migrate.rs (ensure_migrations_table)
        'mysql': ['CREATE TABLE IF NOT EXISTS {table} (\n'
                  '    version BIGINT PRIMARY KEY,\n'
                  '    description TEXT NOT NULL,\n'
                  '    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n'
                  '    success BOOLEAN NOT NULL,\n'
                  '    checksum BLOB NOT NULL,\n'
                  '    execution_time BIGINT NOT NULL\n'
                  ')'],
        # launchbadge/sqlx sqlx-sqlite/src/migrate.rs (ensure_migrations_table)
        'sqlite': ['CREATE TABLE IF NOT EXISTS {table} (\n'
                   '    version BIGINT PRIMARY KEY,\n'
                   '    description TEXT NOT NULL,\n'
                   '    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n'
                   '    success BOOLEAN NOT NULL,\n'
                   '    checksum BLOB NOT NULL,\n'
                   '    execution_time BIGINT NOT NULL\n'
                   ')'],
    }

    def scan(self, path, params):
        path, entries = list_dir(path, self.what)
        out = {}
        for name in entries:
            m = FILE.match(name)
            if not m or m.group(3) == '.down':
                continue
            full = os.path.join(path, name)
            v = int(m.group(1))
            data = read_bytes(full)
            out[v] = Local(str(v), name, full, checksums.sha384(data),
                           description=m.group(2).replace('_', ' '), data=data)
        return [out[v] for v in sorted(out)]

    def checksum_matches(self, local, stored):
        return bytes(stored) == local.checksum

    def row_id(self, row):
        return str(row['version'])

    def records(self, rows, params):
        return [Record(str(r['version']), 'applied' if r['success'] else 'failed', r['checksum']) for r in rows]

    def where(self, ctx):
        return {'version': int(ctx.migration)}

    def plan(self, ctx):
        rec = self.state_of(ctx)
        if ctx.state == 'absent':
            return [Delete(self.where(ctx))] if rec else []
        if ctx.state == 'rolled_back':
            if rec == 'applied':
                raise DbopsError(
                    'Migration %s is recorded as applied successfully; sqlx has no rolled-back state (sqlx migrate '
                    'revert runs the down script and deletes the row). Nothing was changed. To forget it, use '
                    'state=absent (its schema changes stay in the database).' % ctx.migration)
            return [Delete(self.where(ctx))] if rec == 'failed' else []
        if rec == 'applied':
            self.check_same_checksum(ctx)
            return []
        m = self.require_local(ctx, 'sqlx stores the SHA-384 checksum of the file')
        ops = [Delete(self.where(ctx))] if rec == 'failed' else []
        ops.append(Insert([('version', int(m.id)), ('description', m.meta['description']), ('success', True),
                           ('checksum', m.checksum), ('execution_time', -1)]))
        return ops

    # --- sqlx migrate run (migration_apply) -----------------------------------------------------
    native_apply = True

    def tool_lock(self, engine, params):
        # sqlx-postgres/src/migrate.rs lock(): SELECT pg_advisory_lock($1), generate_lock_id(current database):
        # 0x3d32ad9e * CRC-32/ISO-HDLC(database name) as i64 (Migrator.locking is true by default).
        # sqlx-mysql/src/migrate.rs lock(): SELECT GET_LOCK(?, -1) (waits for ever) with the same number as
        # lower-case hex (format!("{:x}", ...)) of DATABASE(). SQLite: none.
        import zlib
        key = 0x3d32ad9e * zlib.crc32(params['database'].encode('utf-8'))
        if engine == 'postgresql':
            return dict(kind='pg_advisory', key=key, source='sqlx: SELECT pg_advisory_lock(%d)' % key)
        if engine == 'mysql':
            name = '%x' % key
            return dict(kind='mysql_named', name=name, source="sqlx: SELECT GET_LOCK('%s', -1)" % name)
        return None

    def deploy(self, local, engine, state, params):
        """sqlx migrate run, per migration (launchbadge/sqlx sqlx-<engine>/src/migrate.rs apply): PostgreSQL and
        SQLite - in one transaction the script, then INSERT (version, description, success TRUE, checksum,
        execution_time -1); after the commit UPDATE execution_time. MySQL - in one transaction INSERT with
        success FALSE, the script, UPDATE success = TRUE (a DDL statement commits at once, so a later failure
        leaves the success = FALSE row sqlx then refuses: 'partially applied'). '-- no-transaction' on the first
        line: the same statements without BEGIN/COMMIT."""
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.scripts import split
        text = read_text(local)
        transaction = not text.startswith('-- no-transaction')
        v = int(local.id)
        row = [('version', v), ('description', local.meta['description'])]
        if engine == 'mysql':
            first = [Insert(row + [('success', False), ('checksum', local.checksum), ('execution_time', -1)])]

            def inside(_ms):
                return [Update({'success': True}, {'version': v})]
        else:
            first = []

            def inside(_ms):
                return [Insert(row + [('success', True), ('checksum', local.checksum), ('execution_time', -1)])]
        return Unit(local, split(text, engine), transaction, first=first, inside=inside,
                    after=lambda ms: [Update({'execution_time': ms * 1000000}, {'version': v})],
                    note='transaction' if transaction else 'no-transaction')


TOOL = Sqlx()
