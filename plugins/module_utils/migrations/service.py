# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What migration_status and migration_resolve do, on top of a tool and an engine adapter."""

from __future__ import annotations

import datetime
import decimal

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import get_tool
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.base import Context, Sql, verdict

FINDINGS = ('failed', 'unknown', 'modified', 'pending')


def plain(value):
    """A history value as JSON-friendly data."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def plain_rows(rows):
    return [{k: plain(v) for k, v in r.items()} for r in rows]


class History:
    """The history table of one tool on one database, and the migrations on disk."""

    def __init__(self, db, params):
        self.db = db
        self.params = params
        self.tool = get_tool(params['tool'])
        self.table = params.get('history_table') or self.tool.table
        self.sql = Sql(db, self.table)
        self.local = None
        if params.get('migrations_path'):
            self.local = self.tool.scan(params['migrations_path'], params)
        self.read()

    def read(self):
        present = self.db.history_columns(self.table)
        self.exists = present is not None
        self.rows = []
        if self.exists:
            self.tool.check_columns(present, self.sql.table)
            self.rows = self.db.history_select(self.table, self.tool.read_columns(present),
                                               [c for c in self.tool.order_by if c in present])
        return self.rows

    def status(self):
        st = self.tool.status(self.local, self.rows, self.params)
        clean, parts = verdict(st, self.local is not None)
        where = '%s history (%s)' % (self.tool.name, self.sql.table)
        if not self.exists:
            summary = '%s: table does not exist (nothing recorded)%s' % (
                where, ', %d migration(s) on disk pending' % len(st['pending']) if st['pending'] else '')
        elif clean:
            summary = '%s: clean, %d applied, current %s' % (
                where, len(st['applied']), ', '.join(st['current']) or 'none')
        else:
            summary = '%s: %s; %d applied, current %s' % (
                where, ', '.join(parts), len(st['applied']), ', '.join(st['current']) or 'none')
        if self.local is None:
            summary += ' (migrations_path not given: pending, unknown and modified not checked)'
        st.update(clean=clean, summary=summary, history_table=self.table, table_exists=self.exists,
                  tool=self.tool.name, local_count=len(self.local) if self.local is not None else None,
                  history_rows=len(self.rows))
        return st


def resolve(db, params, check_mode):
    """Plan and apply one migration's state. Returns the result dict (without server/queries)."""
    h = History(db, params)
    tool = h.tool
    migration = tool.normalise(params['migration'])
    ops = []
    rows = h.rows
    created = False
    if not h.exists:
        if not params.get('create_table'):
            if params['state'] != 'applied':
                return dict(changed=False, migration=migration, created_table=False,
                            before=dict(rows=[], state=None), after=dict(rows=[], state=None),
                            msg='%s does not exist: nothing is recorded for %s.' % (h.sql.table, migration))
            raise DbopsError(
                'The %s history table %s does not exist in database %s. Set create_table: true to create it as %s '
                'does (then %s is recorded in it), or check tool/history_table/database. Nothing was changed.'
                % (tool.name, h.sql.table, params['database'], tool.name, migration))
        ops += tool.create_ops(h.sql)
        created = True
    ctx = Context(tool, h.sql, migration, params['state'], h.local, rows, params, h.exists)
    before_state = state_word(tool, ctx)
    ops += tool.plan(ctx)
    statements = [op.render(h.sql) for op in ops]
    before_rows = tool.rows_of(rows, migration)
    predicted = rows
    for op in ops:
        predicted = op.simulate(predicted)
    predicted = [dict(dict.fromkeys(tool.columns), **r) for r in predicted]
    db.history_apply(statements)
    if statements and not check_mode:
        after_all = h.read()
    else:
        after_all = predicted
    after_ctx = Context(tool, h.sql, migration, params['state'], h.local, after_all, params, True)
    return dict(changed=bool(statements), migration=migration, created_table=created,
                before=dict(rows=plain_rows(before_rows), state=before_state),
                after=dict(rows=plain_rows(tool.rows_of(after_all, migration)), state=state_word(tool, after_ctx)))


def state_word(tool, ctx):
    st = tool.status(ctx.local, ctx.rows, ctx.params)
    if ctx.migration in st['failed']:
        return 'failed'
    if ctx.migration in st['applied'] or ctx.migration in st.get('current', []) and ctx.migration not in st['failed']:
        return 'applied'
    return 'absent'
