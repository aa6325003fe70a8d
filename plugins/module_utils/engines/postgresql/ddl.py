# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""PostgreSQL adapter, DDL part: the plans of enum_add and column_ensure, and the probes that ask the
server how it reads a definition (on a temporary table, in a transaction that is rolled back).

Quoting is psycopg.sql's; values are sql.Literal.
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    DbopsError, Plan, Step, compare_column, did_you_mean, requested_comment, requested_default,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.postgresql.connection import psycopg, sql
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import not_null as online_not_null


class PostgresDdl:
    """DDL planning."""

    # --- enums -----------------------------------------------------------------------
    def max_label_bytes(self):
        return int(self.fetchone('SHOW max_identifier_length')[0])

    def plan_enum_add(self, schema, name, values, before=None, after=None, create=False):
        """Plan for enum_add of the enum type schema.name (schema None: the current schema)."""
        schema = schema or self.current_schema()
        target = self.display(schema, name)
        limit = self.max_label_bytes()
        for v in values:
            if not v:
                self.fail('Enum values cannot be empty strings (PostgreSQL labels are 1 to %d bytes).' % limit)
            if len(v.encode('utf-8')) > limit:
                self.fail('Enum value %r is %d bytes long; PostgreSQL labels are at most %d bytes '
                          '(max_identifier_length). Use a shorter value.' % (v, len(v.encode('utf-8')), limit))
        current, other_kind = self.find_enum(schema, name)
        if other_kind:
            self.fail('%s is a %s, not an enum type; enum_add only adds values to enum types.' % (target, other_kind))
        if current is None:
            if not self.schema_exists(schema):
                self.fail('Schema %s does not exist in database %s.%s' % (
                    sql.Identifier(schema).as_string(self.conn), self.params['database'],
                    did_you_mean(schema, self.schema_names())))
            if not create:
                enums = self.enum_names()
                candidates = [n if s == schema else '%s.%s' % (s, n) for s, n in enums]
                self.fail('Enum type %s does not exist in database %s.%s Set create: true to create it, or '
                          'check name/schema (names are case-sensitive: Prisma creates "CredentialType").'
                          % (target, self.params['database'], did_you_mean(name, candidates) or
                             (' Enum types present: %s.' % (', '.join('%s.%s' % e for e in enums) or 'none'))))
            if before or after:
                self.fail('before/after cannot be used when creating the type %s: it has no values yet.' % target)
            stmt = sql.SQL('CREATE TYPE {} AS ENUM ({})').format(
                self.qualified(schema, name), sql.SQL(', ').join(sql.Literal(v) for v in values))
            return Plan(target, before=None, after=dict(type=target, values=list(values)), added=list(values),
                        steps=[Step(self.render(stmt), 'create the enum type')], created=True)
        anchor = before or after
        if anchor is not None and anchor not in current:
            self.fail('%s %r is not a value of %s (values: %s); nothing was changed.'
                      % ('before' if before else 'after', anchor, target, ', '.join(current)))
        to_add = [v for v in values if v not in current]
        steps = []
        final = list(current)
        prev = after
        for v in to_add:
            if after is not None:
                stmt = sql.SQL('ALTER TYPE {} ADD VALUE IF NOT EXISTS {} AFTER {}').format(
                    self.qualified(schema, name), sql.Literal(v), sql.Literal(prev))
                final.insert(final.index(prev) + 1, v)
                prev = v
            elif before is not None:
                stmt = sql.SQL('ALTER TYPE {} ADD VALUE IF NOT EXISTS {} BEFORE {}').format(
                    self.qualified(schema, name), sql.Literal(v), sql.Literal(before))
                final.insert(final.index(before), v)
            else:
                stmt = sql.SQL('ALTER TYPE {} ADD VALUE IF NOT EXISTS {}').format(
                    self.qualified(schema, name), sql.Literal(v))
                final.append(v)
            steps.append(Step(self.render(stmt), 'add enum value %r' % v))
        return Plan(target, before=dict(type=target, values=current), after=dict(type=target, values=final),
                    steps=steps, added=to_add)

    def probe_column(self, column, type_sql, default_sql):
        """Ask the server itself how it reads a column definition, in a transaction that is rolled back.

        Returns dict(type, default, fast_default): the server's own spelling of
        the type and default (format_type / pg_get_expr; a NULL default reads
        as None), and whether ADD COLUMN with this default is metadata-only
        (atthasmissing). The probe is an empty temporary table: the default is
        evaluated for no row, and nothing persists.
        """
        col = sql.Identifier(column)
        probe = sql.Identifier('pg_temp', 'dbops_probe')
        add = sql.SQL('ALTER TABLE {} ADD COLUMN {} ').format(probe, col) + sql.SQL(type_sql)
        if default_sql is not None:
            add = add + sql.SQL(' DEFAULT ') + sql.SQL(default_sql)
        attr_q = ("SELECT format_type(a.atttypid, a.atttypmod), pg_get_expr(d.adbin, d.adrelid), a.atthasmissing, "
                  "d.adbin IS NOT NULL AND pg_get_expr(d.adbin, d.adrelid) ~ '^NULL(::.*)?$' "
                  "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
                  "WHERE a.attrelid = 'pg_temp.dbops_probe'::regclass AND a.attname = %s")
        out = {}
        try:
            with self.conn.transaction(force_rollback=True):
                self.conn.execute(sql.SQL('CREATE TEMPORARY TABLE {} ()').format(probe))
                # prepare=True: the extended protocol runs exactly one statement, whatever the strings hold.
                self.conn.execute(add, prepare=True)
                out['type'], out['default'], has_missing, is_null = self.fetchone(attr_q, [column])
                if is_null:  # DEFAULT NULL::varchar(10) is no default at all
                    out['default'] = None
                out['fast_default'] = out['default'] is None or bool(has_missing)
        except psycopg.Error as e:
            raise DbopsError('PostgreSQL does not accept this column definition (type %r%s): %s' % (
                type_sql, ', default %r' % default_sql if default_sql is not None else '',
                str(e).strip().splitlines()[0]))
        return out

    def probe_rewrite(self, column, current_type, type_sql, using=None):
        """Whether changing the column's type rewrites the table: the probe's relfilenode changes.

        Runs on an empty temporary table with the column's current type, in a
        transaction that is rolled back.
        """
        col = sql.Identifier(column)
        probe = sql.Identifier('pg_temp', 'dbops_probe')
        node = "SELECT relfilenode FROM pg_class WHERE oid = 'pg_temp.dbops_probe'::regclass"
        try:
            with self.conn.transaction(force_rollback=True):
                self.conn.execute(sql.SQL('CREATE TEMPORARY TABLE {} ({} ').format(probe, col)
                                  + sql.SQL(current_type) + sql.SQL(')'), prepare=True)
                before = self.fetchone(node)[0]
                alter = sql.SQL('ALTER TABLE {} ALTER COLUMN {} TYPE ').format(probe, col) + sql.SQL(type_sql)
                if using:
                    alter = alter + sql.SQL(' USING ') + sql.SQL(using)
                self.conn.execute(alter, prepare=True)
                return self.fetchone(node)[0] != before
        except psycopg.Error as e:
            hint = '' if using else ' Give a using expression that converts the values (using: ...).'
            raise DbopsError('PostgreSQL cannot change the column from %s to %s%s: %s.%s Nothing was changed.' % (
                current_type, type_sql, ' using %r' % using if using else '',
                str(e).strip().splitlines()[0], hint))

    def plan_column(self, spec):
        """Plan (engines/base.py) for column_ensure. spec: the module's options."""
        schema = spec.get('schema') or self.current_schema()
        table, column = spec['table'], spec['column']
        target = self.display(schema, table)
        oid = self.find_table(schema, table)
        if oid is None:
            kind = self.relation_kind(schema, table)
            if kind:
                self.fail('%s is a %s, not a table; column_ensure changes the columns of tables only (change the %s\'s '
                          'definition instead). Nothing was changed.' % (target, kind, kind))
            if not self.schema_exists(schema):
                self.fail('Schema %s does not exist.%s' % (schema, did_you_mean(schema, self.schema_names())))
            self.fail('Table %s does not exist in database %s.%s' % (
                target, self.params['database'], did_you_mean(table, self.table_names(schema))))
        cols = {c['name']: c for c in self.columns(oid)}
        current = cols.get(column)
        qtable, qcol = self.qualified(schema, table), sql.Identifier(column)
        where = '%s.%s' % (target, sql.Identifier(column).as_string(self.conn))

        if spec['state'] == 'absent':
            absent = self.plan_absent_column(spec, where, current)
            if absent is not None:
                return absent
            stmt = sql.SQL('ALTER TABLE {} DROP COLUMN {}').format(qtable, qcol)
            return Plan(where, before=current, after=None, steps=[Step(self.render(stmt), 'drop the column')])

        managed_default, default_expr = requested_default(spec)
        managed_comment, comment = requested_comment(spec)
        want = self.probe_column(column, spec['type'], default_expr)
        desired = dict(name=column, type=want['type'], nullable=spec['nullable'],
                       default=want['default'] if managed_default else (current['default'] if current else None),
                       comment=comment if managed_comment else (current['comment'] if current else None))
        comment_stmt = sql.SQL('COMMENT ON COLUMN {} IS {}').format(
            sql.Identifier(schema, table, column), sql.Literal(desired['comment']))
        steps = []
        if current is None:
            if not spec['nullable'] and desired['default'] is None:
                rows = self.count_rows(schema, table)
                if rows:
                    self.fail('Cannot add %s as NOT NULL without a default: %s has %d row(s), which would have no '
                              'value. Give a default (default: ...), or add it nullable, backfill, then set '
                              'nullable: false. Nothing was changed.' % (where, target, rows), row_count=rows)
            if not want['fast_default'] and not spec.get('allow_rewrite'):
                self.fail('The default %r is volatile: adding %s with it rewrites every row of %s under an '
                          'ACCESS EXCLUSIVE lock. Set allow_rewrite: true to accept that, or add the column without '
                          'a default and backfill in batches. Nothing was changed.'
                          % (default_expr, where, target))
            stmt = sql.SQL('ALTER TABLE {} ADD COLUMN {} ').format(qtable, qcol) + sql.SQL(spec['type'])
            if not spec['nullable']:
                stmt = stmt + sql.SQL(' NOT NULL')
            if desired['default'] is not None:
                stmt = stmt + sql.SQL(' DEFAULT ') + sql.SQL(default_expr)
            steps.append(Step(self.render(stmt), 'add the column'))
            if desired['comment'] is not None:
                steps.append(Step(self.render(comment_stmt), 'set the comment'))
            return Plan(where, before=None, after=desired, steps=steps)

        differences, plan = compare_column(where, current, desired, spec.get('alter'))
        if plan is not None:
            return plan
        parts = []
        if 'type' in differences:
            if self.probe_rewrite(column, current['type'], spec['type'], spec.get('using')) \
                    and not spec.get('allow_rewrite'):
                self.fail('Changing %s from %s to %s rewrites the whole table %s under an ACCESS EXCLUSIVE lock. '
                          'Set allow_rewrite: true to accept that (in a maintenance window). Nothing was changed.'
                          % (where, current['type'], want['type'], target))
            part = sql.SQL('ALTER COLUMN {} TYPE ').format(qcol) + sql.SQL(spec['type'])
            if spec.get('using'):
                part = part + sql.SQL(' USING ') + sql.SQL(spec['using'])
            parts.append(part)
        if 'default' in differences:
            if desired['default'] is None:
                parts.append(sql.SQL('ALTER COLUMN {} DROP DEFAULT').format(qcol))
            else:
                parts.append(sql.SQL('ALTER COLUMN {} SET DEFAULT ').format(qcol) + sql.SQL(default_expr))
        not_null = []
        if 'nullable' in differences:
            if desired['nullable']:
                parts.append(sql.SQL('ALTER COLUMN {} DROP NOT NULL').format(qcol))
            else:
                nulls = self.count_rows(schema, table, where_null=column)
                if nulls:
                    self.fail('Cannot make %s NOT NULL: %d row(s) have NULL in it. Backfill them first '
                              '(UPDATE ... SET %s = ... WHERE %s IS NULL, in batches). Nothing was changed.'
                              % (where, nulls, column, column), null_count=nulls)
                # PostgreSQL 12+: CHECK NOT VALID -> VALIDATE -> SET NOT NULL -> drop the check (online_ddl/not_null.py)
                not_null = online_not_null.steps(self, schema, table, column)
                if not not_null:
                    parts.append(sql.SQL('ALTER COLUMN {} SET NOT NULL').format(qcol))
        if parts:
            stmt = sql.SQL('ALTER TABLE {} ').format(qtable) + sql.SQL(', ').join(parts)
            steps.append(Step(self.render(stmt), 'alter the column: %s' % ', '.join(
                d for d in differences if d != 'comment')))
        steps.extend(not_null)
        if 'comment' in differences:
            steps.append(Step(self.render(comment_stmt), 'set the comment'))
        return Plan(where, before=current, after=desired, steps=steps, differences=differences)
