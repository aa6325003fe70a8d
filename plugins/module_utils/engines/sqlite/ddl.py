# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite adapter, DDL part: column_ensure's plan (ADD / DROP COLUMN; SQLite cannot alter a column)."""

from __future__ import annotations

import sqlite3

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    Plan, Step, compare_column, did_you_mean, requested_default,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.catalog import normalise_type
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.connection import quote_ident


class SqliteDdl:
    """DDL planning."""

    def plan_column(self, spec):
        """Plan (engines/base.py) for column_ensure. spec: the module's options."""
        table, column = spec['table'], spec['column']
        if table not in self.table_names():
            kind = self.fetchall("SELECT type FROM sqlite_master WHERE name = ? AND type <> 'table'", (table,))
            if kind:
                self.fail('%s is a %s, not a table; column_ensure changes the columns of tables only (change the '
                          '%s\'s definition instead). Nothing was changed.' % (quote_ident(table), kind[0][0], kind[0][0]))
            self.fail('Table %s does not exist in %s.%s' % (
                quote_ident(table), self.path, did_you_mean(table, self.table_names()) or
                (' The database has no tables at all: was it ever migrated?' if not self.table_names() else '')))
        current = self.columns(table).get(column)
        target = '%s.%s' % (quote_ident(table), quote_ident(column))
        if spec.get('comment') is not None:
            self.fail('SQLite has no column comments; remove the comment option for SQLite.')
        if spec['state'] == 'absent':
            absent = self.plan_absent_column(spec, target, current)
            if absent is not None:
                return absent
            if sqlite3.sqlite_version_info < (3, 35, 0):
                self.fail('SQLite %s cannot drop columns (3.35 or later can).' % sqlite3.sqlite_version)
            stmt = 'ALTER TABLE %s DROP COLUMN %s' % (quote_ident(table), quote_ident(column))
            return Plan(target, before=current, after=None, steps=[Step(stmt, 'drop the column')])
        managed_default, default_expr = requested_default(spec)
        desired = dict(name=column, type=spec['type'], nullable=spec['nullable'],
                       default=default_expr if managed_default else (current['default'] if current else None),
                       comment=None)
        if current is not None:
            # SQLite keeps the declared type as written and the default as its SQL text: both compared normalised.
            differences, plan = compare_column(target, current, desired, spec.get('alter'), keys=('type', 'nullable', 'default'),
                                               same=dict(type=_same_type, default=_same_default))
            if plan is None:
                self.fail('SQLite cannot change an existing column (%s differs: %s); it can only be done by '
                          'rebuilding the table (create new table, copy, drop, rename) in a migration. '
                          'Nothing was changed.' % (target, ', '.join(differences)))
            return plan
        if not spec['nullable'] and desired['default'] is None:
            self.fail('SQLite cannot add %s as NOT NULL without a default (existing rows would have no value). '
                      'Give a default, or add it nullable. Nothing was changed.' % target)
        stmt = 'ALTER TABLE %s ADD COLUMN %s %s' % (quote_ident(table), quote_ident(column), spec['type'])
        if not spec['nullable']:
            stmt += ' NOT NULL'
        if spec.get('default') is not None:
            stmt += ' DEFAULT %s' % spec['default']
        return Plan(target, before=None, after=desired, steps=[Step(stmt, 'add the column')])


def _same_type(a, b):
    return normalise_type(a) == normalise_type(b)


def _same_default(a, b):
    return (a or '').strip() == (b or '').strip()
