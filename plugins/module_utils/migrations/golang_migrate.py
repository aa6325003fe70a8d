# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""golang-migrate: schema_migrations holds ONE row (version, dirty).

Every migration up to version is applied; dirty = true means the migration
at version started and did not finish (failed). SetVersion empties the table
and inserts the new row, in one transaction; migrate force V is
SetVersion(V, false). Files: <version>_<title>.up.<ext> / .down.<ext>.
Marking V applied forces V; rolling V back forces the version before it on disk
(or empties the table when V is the first), which is the documented fix for a
dirty database: force the last version that completed.
"""

from __future__ import annotations

import re
import zlib

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import (
    Delete, Insert, IntegerVersions, Local, Tool, Unit, list_dir, read_text,
)

# golang-migrate/migrate database/util.go
ADVISORY_LOCK_ID_SALT = 1486364155


def advisory_lock_id(database_name, *additional):
    """database.GenerateAdvisoryLockId: CRC32 (IEEE) of the names joined by NUL (the additional names first),
    times the salt, as uint32."""
    if additional:
        database_name = '\x00'.join(list(additional) + [database_name])
    return (zlib.crc32(database_name.encode('utf-8')) * ADVISORY_LOCK_ID_SALT) & 0xFFFFFFFF


FILE = re.compile(r'^([0-9]+)_(.*)\.(up|down)\.(.*)$')


class GolangMigrate(IntegerVersions, Tool):
    name = 'golang-migrate'
    table = 'schema_migrations'
    columns = ('version', 'dirty')
    order_by = ('version',)
    single_row = True
    what = 'migrations (<version>_<title>.up.sql)'
    ddl = {
        # golang-migrate/migrate database/postgres/postgres.go (ensureVersionTable)
        'postgresql': ['CREATE TABLE IF NOT EXISTS {table} (version bigint not null primary key, dirty boolean not null)'],
        # golang-migrate/migrate database/mysql/mysql.go (ensureVersionTable)
        'mysql': ['CREATE TABLE IF NOT EXISTS {table} (version bigint not null primary key, dirty boolean not null)'],
        # golang-migrate/migrate database/sqlite3/sqlite3.go (ensureVersionTable)
        'sqlite': ['CREATE TABLE IF NOT EXISTS {table} (version uint64,dirty bool)',
                   'CREATE UNIQUE INDEX IF NOT EXISTS version_unique ON {table} (version)'],
    }

    def scan(self, path, params):
        path, entries = list_dir(path, self.what)
        seen = {}
        for name in entries:
            m = FILE.match(name)
            if m and m.group(3) == 'up':
                seen[int(m.group(1))] = name
        import os
        return [Local(str(v), seen[v], os.path.join(path, seen[v])) for v in sorted(seen)]

    def row_id(self, row):
        return str(row['version'])

    def status(self, local, rows, params):
        out = dict(applied=[], pending=[], failed=[], unknown=[], modified=[], current=[])
        if not rows:
            out['pending'] = [m.id for m in local or []]
            return out
        version, dirty = int(rows[0]['version']), bool(rows[0]['dirty'])
        out['current'] = [str(version)]
        if dirty:
            out['failed'] = [str(version)]
        if local is None:
            if not dirty:
                out['applied'] = [str(version)]
            return out
        ids = [int(m.id) for m in local]
        out['applied'] = [str(v) for v in ids if v < version or (v == version and not dirty)]
        out['pending'] = [str(v) for v in ids if v > version]
        if version not in ids:
            out['unknown'] = [str(version)]
        return out

    def force(self, version):
        ops = [Delete()]
        if version is not None:
            ops.append(Insert([('version', int(version)), ('dirty', False)]))
        return ops

    def plan(self, ctx):
        v = int(ctx.migration)
        row = ctx.rows[0] if ctx.rows else None
        cur = int(row['version']) if row else None
        dirty = bool(row['dirty']) if row else False
        if ctx.state == 'applied':
            if cur is not None and not dirty and v <= cur:
                return []
            if ctx.local is not None:
                self.require_local(ctx)
            return self.force(v)
        # rolled_back / absent: v must no longer count as applied
        if cur is None or v > cur:
            return []
        if v < cur:
            raise DbopsError(
                'Version %s is below the recorded version %s%s: golang-migrate records only the latest version, so '
                'un-applying %s would un-apply every version after it too. Nothing was changed. Give the recorded '
                'version %s, or mark the version you want applied (state=applied forces it).'
                % (v, cur, ' (dirty)' if dirty else '', v, cur))
        if ctx.local is None:
            raise DbopsError('migrations_path is required to roll back golang-migrate version %s: the version before '
                             'it on disk becomes the recorded version (migrate force <previous>). Nothing was changed.'
                             % v)
        before = [int(m.id) for m in ctx.local if int(m.id) < v]
        return self.force(max(before) if before else None)

    # --- migrate up (migration_apply) -------------------------------------------------------
    native_apply = True

    def tool_lock(self, engine, params):
        table = params.get('history_table') or self.table
        if engine == 'postgresql':
            # database/postgres/postgres.go Lock: GenerateAdvisoryLockId(DatabaseName, migrationsSchemaName,
            # migrationsTableName); SELECT pg_advisory_lock($1)
            key = advisory_lock_id(params['database'], params.get('schema') or 'public', table)
            return dict(kind='pg_advisory', key=key, source='golang-migrate: SELECT pg_advisory_lock(%d)' % key)
        if engine == 'mysql':
            # database/mysql/mysql.go Lock: GenerateAdvisoryLockId("<database>:<table>"); SELECT GET_LOCK(?, 10)
            name = str(advisory_lock_id('%s:%s' % (params['database'], table)))
            return dict(kind='mysql_named', name=name, source="golang-migrate: SELECT GET_LOCK('%s', 10)" % name)
        return None

    def deploy(self, local, engine, state, params):
        """migrate up, per migration (migrate.go runMigrations): SetVersion(v, dirty=true) (one transaction:
        DELETE FROM schema_migrations; INSERT version, dirty), Run(the .up file: PostgreSQL one ExecContext of
        the whole file, i.e. one query and one implicit transaction; MySQL a multi-statement Exec, no
        transaction; SQLite inside a transaction, database/sqlite3/sqlite3.go executeQuery), then
        SetVersion(v, dirty=false). A failure leaves the version dirty."""
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.scripts import split
        prev = state.get('row')
        state['row'] = (int(local.id), False)
        undo = self.force(None) if prev is None else [Delete(), Insert([('version', prev[0]), ('dirty', prev[1])])]
        return Unit(local, split(read_text(local), engine), engine == 'sqlite',
                    before=[Delete(), Insert([('version', int(local.id)), ('dirty', True)])],
                    after=lambda ms: self.force(local.id), undo=undo,
                    note={'postgresql': 'one query (implicit transaction)', 'mysql': 'statements, no transaction',
                          'sqlite': 'transaction'}[engine])

    def deploy_state(self, rows, engine, params):
        return dict(row=(int(rows[0]['version']), bool(rows[0]['dirty'])) if rows else None)


TOOL = GolangMigrate()
