# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Flyway: flyway_schema_history, one row per versioned (or repeatable) migration run.

Versioned migrations are V<version>__<description>.sql; the version's dots or
underscores separate numbers ("1_1" is stored as "1.1", and 1.1 equals
1.1.0). A row with success = false is a failed migration (MySQL and MariaDB
cannot roll DDL back); flyway repair removes such rows. SCHEMA, BASELINE and
DELETE marker rows are not migrations; versions at or below a baseline are not
pending. Repeatable migrations (R__*.sql, version NULL) are not reported.
Checksum: checksums.flyway_crc32 (CRC32 per line, signed 32 bit).
"""

from __future__ import annotations

import os
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import checksums
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import (
    Delete, Expr, Insert, Local, Record, Tool, Unit, list_dir, read_bytes, read_text,
)

FILE = re.compile(r'^V([0-9][0-9._]*?)__(.+)\.sql$')
REPEATABLE = re.compile(r'^R__(.+)\.sql$')
USER = {
    'postgresql': Expr('current_user'),
    'mysql': Expr("SUBSTRING_INDEX(USER(), '@', 1)"),
    'sqlite': '',
}
MARKERS = ('SCHEMA', 'BASELINE', 'DELETE')


def version_key(text):
    parts = [int(p) for p in re.split(r'[._]', str(text)) if p != '']
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def display(text):
    return '.'.join(str(p) for p in version_key(text))


class Flyway(Tool):
    name = 'flyway'
    table = 'flyway_schema_history'
    columns = ('installed_rank', 'version', 'description', 'type', 'script', 'checksum', 'installed_by',
               'installed_on', 'execution_time', 'success')
    order_by = ('installed_rank',)
    has_checksum = True
    needs_files = True
    what = 'SQL migrations (V<version>__<description>.sql)'
    ddl = {
        'postgresql': [
            'CREATE TABLE {table} (\n'
            '    "installed_rank" INT NOT NULL,\n'
            '    "version" VARCHAR(50),\n'
            '    "description" VARCHAR(200) NOT NULL,\n'
            '    "type" VARCHAR(20) NOT NULL,\n'
            '    "script" VARCHAR(1000) NOT NULL,\n'
            '    "checksum" INTEGER,\n'
            '    "installed_by" VARCHAR(100) NOT NULL,\n'
            '    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),\n'
            '    "execution_time" INTEGER NOT NULL,\n'
            '    "success" BOOLEAN NOT NULL\n'
            ')',
            'ALTER TABLE {table} ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank")',
            'CREATE INDEX "flyway_schema_history_s_idx" ON {table} ("success")'],
        'mysql': [
            'CREATE TABLE {table} (\n'
            '    `installed_rank` INT NOT NULL,\n'
            '    `version` VARCHAR(50),\n'
            '    `description` VARCHAR(200) NOT NULL,\n'
            '    `type` VARCHAR(20) NOT NULL,\n'
            '    `script` VARCHAR(1000) NOT NULL,\n'
            '    `checksum` INT,\n'
            '    `installed_by` VARCHAR(100) NOT NULL,\n'
            '    `installed_on` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,\n'
            '    `execution_time` INT NOT NULL,\n'
            '    `success` BOOL NOT NULL,\n'
            '    CONSTRAINT `flyway_schema_history_pk` PRIMARY KEY (`installed_rank`)\n'
            ') ENGINE=InnoDB',
            'CREATE INDEX `flyway_schema_history_s_idx` ON {table} (`success`)'],
        'sqlite': [
            'CREATE TABLE {table} (\n'
            '    "installed_rank" INT NOT NULL PRIMARY KEY,\n'
            '    "version" VARCHAR(50),\n'
            '    "description" VARCHAR(200) NOT NULL,\n'
            '    "type" VARCHAR(20) NOT NULL,\n'
            '    "script" VARCHAR(1000) NOT NULL,\n'
            '    "checksum" INT,\n'
            '    "installed_by" VARCHAR(100) NOT NULL,\n'
            '    "installed_on" TEXT NOT NULL DEFAULT (strftime(\'%Y-%m-%d %H:%M:%f\',\'now\')),\n'
            '    "execution_time" INT NOT NULL,\n'
            '    "success" BOOLEAN NOT NULL\n'
            ')',
            'CREATE INDEX "flyway_schema_history_s_idx" ON {table} ("success")'],
    }

    def scan(self, path, params):
        path, entries = list_dir(path, self.what)
        out = []
        for name in entries:
            m = FILE.match(name)
            if not m:
                continue
            full = os.path.join(path, name)
            data = read_bytes(full)
            out.append(Local(display(m.group(1)), name, full, checksums.flyway_crc32(data),
                             description=m.group(2).replace('_', ' '), data=data))
        out.sort(key=lambda x: version_key(x.id))
        return out

    def normalise(self, migration):
        try:
            return display(migration)
        except ValueError:
            return migration

    def sort_key(self, mid):
        return version_key(mid)

    def row_id(self, row):
        return display(row['version']) if row['version'] is not None else None

    def records(self, rows, params):
        out = []
        for r in rows:
            if r['version'] is None or (r['type'] or '').upper() in MARKERS:
                continue
            out.append(Record(display(r['version']), 'applied' if r['success'] else 'failed', r['checksum']))
        return out

    def status(self, local, rows, params):
        out = super().status(local, rows, params)
        baselines = [version_key(r['version']) for r in rows
                     if (r['type'] or '').upper() == 'BASELINE' and r['version'] is not None]
        if baselines:
            base = max(baselines)
            out['pending'] = [v for v in out['pending'] if version_key(v) > base]
        return out

    def rows_of(self, rows, migration_id):
        return [r for r in rows if r['version'] is not None and display(r['version']) == migration_id
                and (r['type'] or '').upper() not in MARKERS]

    def plan(self, ctx):
        mine = self.rows_of(ctx.rows, ctx.migration)
        ok = [r for r in mine if r['success']]
        bad = [r for r in mine if not r['success']]
        delete_bad = [Delete({'installed_rank': r['installed_rank']}) for r in bad]
        if ctx.state == 'absent':
            return [Delete({'installed_rank': r['installed_rank']}) for r in mine]
        if ctx.state == 'rolled_back':
            if ok and not bad:
                raise DbopsError(
                    'Migration %s is recorded as applied successfully (installed_rank %s); Flyway has no rolled-back '
                    'state for it (repair only removes failed rows). Nothing was changed. To forget it, use '
                    'state=absent (its schema changes stay in the database).'
                    % (ctx.migration, ok[-1]['installed_rank']))
            return delete_bad
        if ok:
            self.check_same_checksum(ctx)
            return delete_bad
        m = self.require_local(ctx, 'Flyway stores the checksum of the script')
        rank = max([r['installed_rank'] for r in ctx.rows] or [0]) + 1
        return delete_bad + [Insert([
            ('installed_rank', rank), ('version', m.id), ('description', m.meta['description']), ('type', 'SQL'),
            ('script', m.name), ('checksum', m.checksum), ('installed_by', USER[ctx.engine]),
            ('execution_time', 0), ('success', True)])]

    # --- flyway migrate (migration_apply) ------------------------------------------------------
    native_apply = True
    # validateOnMigrate: "Detected resolved migration not applied to database" unless -outOfOrder=true
    out_of_order_flag = '-outOfOrder=true'

    def tool_lock(self, engine, params):
        """Flyway's lock around a migrate, keyed by its history table as Table.toString() spells it (quoted
        schema.table) through Java's String.hashCode(). PostgreSQL (flyway-database-postgresql
        PostgreSQLAdvisoryLockTemplate): advisory lock number 0x466C79776179 ('Flyway') + that hash, taken
        with pg_try_advisory_xact_lock (postgresql.transactional.lock, the default) or pg_try_advisory_lock,
        retried; either conflicts with our session-level pg_try_advisory_lock on the same number. MySQL/MariaDB
        (flyway-mysql MySQLNamedLockTemplate): SELECT GET_LOCK('Flyway-<hash>', 10), retried (not on a Percona
        XtraDB Cluster in strict mode or with wsrep on, where Flyway locks the table instead). SQLite: none."""
        table = params.get('history_table') or self.table
        if engine == 'postgresql':
            schema = params.get('schema') or 'public'
            quoted = '.'.join('"%s"' % p.replace('"', '""') for p in (schema, table))
            key = FLYWAY_LOCK_MAGIC + java_string_hash(quoted)
            return dict(kind='pg_advisory', key=key, source='flyway: SELECT pg_try_advisory_xact_lock(%d) (%s)'
                        % (key, quoted))
        if engine == 'mysql':
            quoted = '`%s`.`%s`' % (params['database'], table)
            name = 'Flyway-%d' % java_string_hash(quoted)
            return dict(kind='mysql_named', name=name, source="flyway: SELECT GET_LOCK('%s', 10) (%s)" % (name, quoted))
        return None

    def deploy_state(self, rows, engine, params):
        return dict(rank=max([r['installed_rank'] for r in rows] or [0]) + 1)

    def repeatable_pending(self, path, rows):
        """The repeatable migrations (R__<description>.sql) Flyway runs after the versioned ones, in description
        order: those never applied, or whose checksum differs from their latest successful row (Flyway matches a
        repeatable's rows by description; MigrationInfoServiceImpl: outdated when the checksum changed)."""
        path, entries = list_dir(path, self.what)
        latest = {}
        for r in rows:  # ordered by installed_rank
            if r['version'] is None and (r['type'] or '').upper() not in MARKERS and r['success']:
                latest[r['description']] = r['checksum']
        out = []
        for name in entries:
            m = REPEATABLE.match(name)
            if not m:
                continue
            full = os.path.join(path, name)
            desc = m.group(1).replace('_', ' ')
            data = read_bytes(full)
            local = Local('R__' + m.group(1), name, full, checksums.flyway_crc32(data),
                          description=desc, repeatable=True, data=data)
            if desc not in latest or latest[desc] != local.checksum:
                out.append(local)
        return sorted(out, key=lambda x: x.meta['description'])

    def deploy(self, local, engine, state, params):
        """flyway migrate, per versioned migration (flyway/flyway DbMigrate.java doMigrateGroup and
        DefaultSqlScriptExecutor): placeholders replaced, the statements executed one by one in one transaction
        per migration, and the history row (installed_rank max + 1, checksum of the file as written, execution
        time in ms, success true) inserted in that transaction. On a failure the transaction is rolled back; where
        the database cannot roll DDL back (MySQL/MariaDB: supportsDdlTransactions false) a success = false row is
        recorded (flyway repair removes it); on PostgreSQL and SQLite nothing is recorded."""
        from ansible_collections.dbops.maintenance.plugins.module_utils.engines.scripts import split
        text = replace_placeholders(read_text(local), local, engine, params)
        rank = state['rank']
        state['rank'] += 1

        def row(ms, success):
            version = None if local.meta.get('repeatable') else local.id
            return [Insert([('installed_rank', rank), ('version', version), ('description', local.meta['description']),
                            ('type', 'SQL'), ('script', local.name), ('checksum', local.checksum),
                            ('installed_by', USER[engine]), ('execution_time', ms), ('success', success)])]
        return Unit(local, split(text, engine), True, inside=lambda ms: row(ms, True), inside_timed=True,
                    failed=(lambda error: row(0, False)) if engine == 'mysql' else None,
                    note='transaction' + (' (DDL commits at once on MySQL)' if engine == 'mysql' else ''))


PLACEHOLDER = re.compile(r'\$\{([^}]*)\}')


# PostgreSQLAdvisoryLockTemplate.LOCK_MAGIC_NUM: the bytes of "Flyway"
FLYWAY_LOCK_MAGIC = (0x46 << 40) + (0x6C << 32) + (0x79 << 24) + (0x77 << 16) + (0x61 << 8) + 0x79


def java_string_hash(text):
    """java.lang.String.hashCode(): s[0]*31^(n-1) + ... + s[n-1] over UTF-16 code units, as a signed int32."""
    data = text.encode('utf-16-be')
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def replace_placeholders(text, local, engine, params):
    """Flyway's placeholder replacement (PlaceholderReplacer): ${name} from placeholders, and the built-in
    flyway:defaultSchema, flyway:user, flyway:database, flyway:table, flyway:filename. A placeholder without
    a value is an error, as in Flyway ('No value provided for placeholder')."""
    values = {str(k): str(v) for k, v in (params.get('placeholders') or {}).items()}
    builtin = {
        'flyway:defaultSchema': params.get('schema') or ('public' if engine == 'postgresql' else params['database']),
        'flyway:user': params.get('login_user') or '',
        'flyway:database': params['database'],
        'flyway:table': params.get('history_table') or 'flyway_schema_history',
        'flyway:filename': local.name,
    }

    def one(m):
        name = m.group(1)
        if name in values:
            return values[name]
        if name in builtin:
            return builtin[name]
        raise DbopsError('%s: no value provided for placeholder ${%s} (set placeholders.%s). Nothing was run.'
                         % (local.name, name, name))
    return PLACEHOLDER.sub(one, text)


TOOL = Flyway()
