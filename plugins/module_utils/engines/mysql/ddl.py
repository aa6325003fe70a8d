# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MySQL / MariaDB adapter, DDL part: the plans of enum_add and column_ensure (ALGORITHM=INSTANT, else
INPLACE, else COPY only when allowed), and the probe that lets the server normalise a definition."""

from __future__ import annotations

import uuid

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    COLUMN_ATTRIBUTES, DbopsError, Plan, Step, compare_column, requested_comment, requested_default,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.catalog import parse_quoted_list
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import quote_ident

MAX_ENUM_VALUE_CHARS = 255
MAX_ENUM_VALUES = 65535


class MysqlDdl:
    """DDL planning."""

    def plan_enum_add(self, table, column, values, before=None, after=None, create=False):
        """Plan (engines/base.py) for enum_add of the ENUM column table.column."""
        if create:
            self.fail('create is PostgreSQL only; on MySQL add the ENUM column with column_ensure.')
        self.require_table(table)
        row = self.require_column(table, column)
        target = '%s.%s' % (quote_ident(table), quote_ident(column))
        if row[6] != 'enum':
            self.fail('Column %s is %s, not an ENUM; enum_add changes ENUM columns only.' % (target, row[1]))
        for v in values:
            if len(v) > MAX_ENUM_VALUE_CHARS:
                self.fail('Enum value %r is %d characters long; MySQL/MariaDB ENUM values are at most %d characters.'
                          % (v[:40] + '...', len(v), MAX_ENUM_VALUE_CHARS))
        state = self.enum_state(table, column)
        current, line = state['values'], state['definition']
        anchor = before or after
        if anchor is not None and anchor not in current:
            self.fail('%s %r is not a value of %s (values: %s); nothing was changed.'
                      % ('before' if before else 'after', anchor, target, ', '.join(current)))
        to_add = [v for v in values if v not in current]
        if not to_add:
            return Plan(target, before=state, after=state)
        final = list(current)
        if after is not None:
            pos = final.index(after) + 1
        elif before is not None:
            pos = final.index(before)
        else:
            pos = len(final)
        final[pos:pos] = to_add
        if len(final) > MAX_ENUM_VALUES:
            self.fail('An ENUM has at most %d values; this would make %d.' % (MAX_ENUM_VALUES, len(final)))
        head = '%s enum(' % quote_ident(column)
        # Existing values keep their literal exactly as SHOW CREATE TABLE wrote it.
        old_values, old_raw, end = parse_quoted_list(line, len(head))
        written = dict(zip(old_values, old_raw))
        new_line = head + ','.join(written.get(v) or self.literal(v) for v in final) + ')' + line[end:]
        base = 'ALTER TABLE %s MODIFY COLUMN %s' % (quote_ident(table), new_line)
        # Appending within the same storage size (1 byte up to 255 values) only changes metadata.
        instant = pos == len(current) and (len(final) <= 255 or len(current) > 255)
        copy = Step(base + ', ALGORITHM=COPY', 'redefine the ENUM by copying the table', requires='allow_copy')
        if instant:
            steps = [Step(base + ', ALGORITHM=INSTANT', 'append ENUM values (metadata only)', alternative=copy)]
        else:
            if not (self.params.get('allow_copy') or self.params.get('method') == 'online'):
                self.fail('Inserting values %s of %s (not at the end, or past 255 values) makes the server copy the '
                          'whole table, blocking writes while it copies. Set method: online to copy it with '
                          'pt-online-schema-change (writes go on), allow_copy: true to accept the blocking copy, or '
                          'append at the end instead. Nothing was changed.'
                          % ('in the middle' if pos != len(current) else 'past 255 values', target))
            steps = [copy]
        after_state = dict(state, values=final, definition=new_line)
        return Plan(target, before=state, after=after_state, steps=steps, added=to_add)

    def probe_column(self, spec, charset=None):
        """Let the server normalise the requested definition on a temporary table that is dropped at once.

        charset: a table's (character set, collation) from table_charset(); the
        probe then reads a string type exactly as that table would.
        """
        probe = 'dbops_probe_%s' % uuid.uuid4().hex[:12]
        definition = self.definition(spec['type'], spec['nullable'], spec.get('default'), spec.get('comment'),
                                     collation=spec.get('collation'))
        options = ''
        if charset and charset[0]:
            options = ' DEFAULT CHARSET=%s COLLATE=%s' % charset
        try:
            self.execute('CREATE TEMPORARY TABLE %s (%s %s)%s' % (
                quote_ident(probe), quote_ident(spec['column']), definition, options))
        except DbopsError as e:
            raise DbopsError('The server does not accept this column definition (%s): %s' % (definition, e))
        try:
            return self.show_columns(probe)[spec['column']]
        finally:
            self.execute('DROP TEMPORARY TABLE IF EXISTS %s' % quote_ident(probe))

    def definition(self, type_sql, nullable, default, comment, extra=None, collation=None):
        """A column definition for ADD/MODIFY COLUMN. extra: the column's current Extra, whose
        AUTO_INCREMENT and ON UPDATE survive a MODIFY."""
        text = type_sql
        if collation:
            text += ' COLLATE %s' % collation
        text += ' NULL' if nullable else ' NOT NULL'
        if default is not None:
            text += ' DEFAULT %s' % default
        lowered = (extra or '').lower()
        if 'auto_increment' in lowered:
            text += ' AUTO_INCREMENT'
        if 'on update' in lowered:
            text += ' ' + extra[lowered.index('on update'):]
        if comment:
            text += ' COMMENT %s' % self.literal(comment)
        return text

    def plan_column(self, spec):
        """Plan (engines/base.py) for column_ensure. spec: the module's options."""
        table, column = spec['table'], spec['column']
        self.require_one_statement_protocol()
        self.require_table(table)
        current = self.show_columns(table).get(column)
        target = '%s.%s' % (quote_ident(table), quote_ident(column))
        qt = quote_ident(table)
        if spec['state'] == 'absent':
            absent = self.plan_absent_column(spec, target, current)
            if absent is not None:
                return absent
            base = 'ALTER TABLE %s DROP COLUMN %s' % (qt, quote_ident(column))
            return Plan(target, before=current, after=None, steps=[self.algorithm_steps(base, 'drop the column')])

        managed_default, default_expr = requested_default(spec)
        managed_comment, comment = requested_comment(spec)
        charset = self.table_charset(table)
        if current is None:
            want = self.probe_column(dict(spec, default=default_expr, comment=comment), charset)
            if not spec['nullable'] and default_expr is None:
                rows_n = self.fetchone('SELECT COUNT(*) FROM %s' % qt)[0]
                if rows_n:
                    self.fail('Cannot add %s as NOT NULL without a default: %s has %d row(s); MySQL/MariaDB would '
                              'silently fill them with zero values (0, \'\', 0000-00-00). Give a default '
                              '(default: ...), or add it nullable, backfill, then set nullable: false. '
                              'Nothing was changed.' % (target, qt, rows_n), row_count=rows_n)
            base = 'ALTER TABLE %s ADD COLUMN %s %s' % (
                qt, quote_ident(column), self.definition(spec['type'], spec['nullable'], default_expr, comment))
            return Plan(target, before=None, after=want, steps=[self.algorithm_steps(base, 'add the column')])

        extra = (current['extra'] or '').lower()
        if 'generated' in extra or 'virtual' in extra or 'persistent' in extra:
            self.fail('%s is a generated column (%s); column_ensure does not change generated columns.'
                      % (target, current['extra']))
        # What the column would be: unmanaged attributes (default, comment, collation) keep their current values.
        want_spec = dict(spec, default=default_expr if managed_default else
                         (self.default_as_sql(table, column) if current['default'] is not None else None),
                         comment=comment if managed_comment else current['comment'])
        want = self.probe_column(want_spec, charset)
        table_collation = charset[1]
        if want['collation'] and current['collation'] and want['collation'] == table_collation:
            # The type names no collation of its own: the column keeps the one it has
            # (said explicitly in the MODIFY only where it is not the table's default).
            want['collation'] = current['collation']
            if current['collation'] != table_collation:
                want_spec['collation'] = current['collation']
        want['extra'] = current['extra']
        differences, plan = compare_column(target, current, want, spec.get('alter'),
                                           keys=COLUMN_ATTRIBUTES + ('collation',))
        if plan is not None:
            return plan
        if 'nullable' in differences and not want['nullable']:
            nulls = self.fetchone('SELECT COUNT(*) FROM %s WHERE %s IS NULL' % (qt, quote_ident(column)))[0]
            if nulls:
                self.fail('Cannot make %s NOT NULL: %d row(s) have NULL in it. Backfill them first '
                          '(UPDATE ... SET %s = ... WHERE %s IS NULL, in batches). Nothing was changed.'
                          % (target, nulls, column, column), null_count=nulls)
        base = 'ALTER TABLE %s MODIFY COLUMN %s %s' % (qt, quote_ident(column), self.definition(
            spec['type'], spec['nullable'], want_spec['default'], want_spec['comment'], current['extra'],
            collation=want_spec.get('collation')))
        return Plan(target, before=current, after=want, differences=differences,
                    steps=[self.algorithm_steps(base, 'alter the column: %s' % ', '.join(differences))])

    def default_as_sql(self, table, column):
        """The current default as an SQL expression (MariaDB stores it that way; MySQL stores the value)."""
        row = {r[0]: r for r in self.column_rows(table)}[column]
        default, extra = row[3], row[5] or ''
        if self.features['column_default_is_sql'] or default is None:
            return default
        if 'DEFAULT_GENERATED' in extra:
            return '(%s)' % default
        return self.literal(default)

    def algorithm_steps(self, base, why):
        """INSTANT, else INPLACE without locking writes, else COPY only with allow_rewrite."""
        copy = Step(base + ', ALGORITHM=COPY', why + ' (copying the table)', requires='allow_rewrite')
        inplace = Step(base + ', ALGORITHM=INPLACE, LOCK=NONE', why + ' (in place)', alternative=copy)
        return Step(base + ', ALGORITHM=INSTANT', why + ' (metadata only)', alternative=inplace)
