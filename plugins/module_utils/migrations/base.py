# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one interface every migration tool implements, and the code they share.

A tool (one file beside this one) says:

* ``table``: its history table; ``columns``: the columns that table must have
  (to refuse a table of another tool); ``ddl``: per engine, the statements the
  tool itself runs to create the table (``{table}`` is the quoted name);
* ``scan(path, params)``: the migrations on disk, in the tool's order (Local);
* ``records(rows, params)``: what each history row means (Record: applied or
  failed, checksum); tools whose history is not one row per migration
  (alembic, golang-migrate) override ``status`` instead;
* ``plan(ctx)``: the operations (Insert / Delete / Update / Raw) that bring one
  migration to the wanted state, or [] when it is already in it.

Operations render to SQL with the engine adapter's quoting (history_ident,
history_literal) and can be simulated on the rows read, which gives check mode
its exact statements and its diff.
"""

from __future__ import annotations

import os

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, similar


class Expr:
    """An SQL expression written as is (now(), CURRENT_TIMESTAMP(3), ...)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def _same(a, b):
    if isinstance(a, bool):
        a = int(a)
    if isinstance(b, bool):
        b = int(b)
    if isinstance(a, (bytes, bytearray, memoryview)):
        a = bytes(a).hex()
    if isinstance(b, (bytes, bytearray, memoryview)):
        b = bytes(b).hex()
    return a is not None and b is not None and str(a) == str(b)


class Op:
    """One statement of a plan."""

    def render(self, sql):
        raise NotImplementedError

    def simulate(self, rows):
        return rows


class Raw(Op):
    def __init__(self, text):
        self.text = text

    def render(self, sql):
        return self.text.format(table=sql.table)


class Insert(Op):
    def __init__(self, values):
        self.values = list(values.items()) if isinstance(values, dict) else list(values)

    def render(self, sql):
        return 'INSERT INTO %s (%s) VALUES (%s)' % (
            sql.table, ', '.join(sql.ident(c) for c, _v in self.values), ', '.join(sql.value(v) for _c, v in self.values))

    def simulate(self, rows):
        new = {c: (v.text if isinstance(v, Expr) else v) for c, v in self.values}
        return rows + [new]


def _where(sql, where):
    return ' AND '.join('%s = %s' % (sql.ident(c), sql.value(v)) for c, v in where.items())


def _matches(row, where):
    return all(_same(row.get(c), v) for c, v in where.items())


class Delete(Op):
    def __init__(self, where=None):
        self.where = where or {}

    def render(self, sql):
        q = 'DELETE FROM %s' % sql.table
        return q + (' WHERE ' + _where(sql, self.where) if self.where else '')

    def simulate(self, rows):
        return [r for r in rows if not _matches(r, self.where)]


class Update(Op):
    def __init__(self, values, where):
        self.values = list(values.items())
        self.where = where

    def render(self, sql):
        return 'UPDATE %s SET %s WHERE %s' % (
            sql.table, ', '.join('%s = %s' % (sql.ident(c), sql.value(v)) for c, v in self.values),
            _where(sql, self.where))

    def simulate(self, rows):
        out = []
        for r in rows:
            if _matches(r, self.where):
                r = dict(r, **{c: (v.text if isinstance(v, Expr) else v) for c, v in self.values})
            out.append(r)
        return out


class Sql:
    """Quoting for one history table on one engine (the adapter's own quoting)."""

    def __init__(self, db, table):
        self.db = db
        self.engine = db.engine
        self.table_name = table
        self.table = db.history_ident(table)

    def ident(self, name):
        return self.db.history_ident(name)

    def value(self, v):
        return v.text if isinstance(v, Expr) else self.db.history_literal(v)


class Local:
    """One migration on disk. id: what the history table stores; name: the file/dir name."""

    def __init__(self, id, name, path=None, checksum=None, **meta):  # pylint: disable=redefined-builtin
        self.id = id
        self.name = name
        self.path = path
        self.checksum = checksum
        self.meta = meta

    def __repr__(self):
        return 'Local(%r)' % self.id


class Record:
    """What the history table says about one migration."""

    def __init__(self, id, state, checksum=None):  # pylint: disable=redefined-builtin
        self.id = id
        self.state = state      # 'applied' or 'failed'
        self.checksum = checksum


class Context:
    """Everything plan() needs: the wanted state and what is known now."""

    def __init__(self, tool, sql, migration, state, local, rows, params, table_exists):
        self.tool = tool
        self.sql = sql
        self.engine = sql.engine
        self.migration = migration
        self.state = state
        self.local = local
        self.rows = rows
        self.params = params
        self.table_exists = table_exists
        self.local_by_id = {m.id: m for m in local} if local is not None else None

    def find_local(self):
        """The Local the operator named (by id or by file name), or None."""
        if self.local is None:
            return None
        return self.tool.find_local(self.local, self.migration)


def unique(seq):
    seen = set()
    out = []
    for x in seq:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def list_dir(path, what):
    """The entries of a migrations directory, or a DbopsError that says what to check."""
    path = os.path.expanduser(path)
    if not os.path.isdir(path):
        raise DbopsError('migrations_path %s is not a directory on the host the module runs on. Give the directory '
                         'that holds the %s (copy it to the host first, e.g. with ansible.builtin.copy).' % (path, what))
    return path, sorted(os.listdir(path))


class IntegerVersions:
    """Mixin of the tools whose migration ids are whole numbers (golang-migrate, goose, sqlx):
    the file name up to the first underscore; ids compare as numbers."""

    def normalise(self, migration):
        try:
            return str(int(str(migration)))
        except ValueError:
            raise DbopsError('%s is not a %s version: its versions are whole numbers (the file name up to the first '
                             'underscore). Nothing was read or changed.' % (migration, self.name))

    def sort_key(self, mid):
        return int(mid)


def read_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


class Tool:
    name = None
    table = None
    columns = ()            # columns the tool's table must have
    order_by = ()           # how to read the history
    ddl = {}                # engine -> list of statements, {table} = quoted table name
    has_checksum = False
    needs_files = False     # state=applied needs migrations_path (checksums, graph)
    what = 'migration files'
    single_row = False      # the table describes the whole history (diff shows it whole)
    native_apply = False    # migration_apply runs its migrations itself (SQL files)
    # The tool refuses pending migrations older than the latest applied one unless this flag of its is given
    # (migration_apply's out_of_order); None: the tool applies them anyway, or counts them as applied.
    out_of_order_flag = None

    # --- apply (migration_apply) ----------------------------------------------------
    def deploy(self, local, engine, state, params):
        """The Unit that runs `local` as the tool does on `engine`. state: a dict the tool may keep
        between the migrations of one run (next installed_rank, ...), seeded from the history rows."""
        raise NotImplementedError

    def deploy_state(self, rows, engine, params):
        """The state deploy() starts from, given the history rows read."""
        return {}

    def tool_lock(self, engine, params):
        """The tool's own migration lock on this engine: None, or dict(kind='pg_advisory', key=int) /
        dict(kind='mysql_named', name=str), with `source` (where the tool takes it)."""
        return None

    def create_ops(self, sql):
        """The statements the tool itself runs to create its history table on this engine."""
        return [Raw(s) for s in self.ddl[sql.engine]]

    # --- disk -------------------------------------------------------------------
    def scan(self, path, params):
        raise NotImplementedError

    def normalise(self, migration):
        return migration

    def find_local(self, local, migration):
        try:
            want = self.normalise(migration)
        except DbopsError:  # not an id of this tool: it may still be a file name (00002_add.sql)
            want = None
        for m in local:
            if m.id == want or m.name == migration or os.path.splitext(m.name)[0] == migration:
                return m
        return None

    def checksum_matches(self, local, stored):
        return stored == local.checksum

    # --- history ------------------------------------------------------------------
    def read_columns(self, present):
        return [c for c in self.columns if c in present]

    def check_columns(self, present, table):
        missing = [c for c in self.columns if c not in present]
        if missing:
            from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import TOOLS, get_tool
            fits = [t for t in TOOLS if t != self.name and all(c in present for c in get_tool(t).columns)]
            raise DbopsError(
                'Table %s has the columns %s, not those of a %s history table (missing: %s). Was the right tool '
                'chosen?%s Nothing was read or changed.' % (
                    table, ', '.join(present), self.name, ', '.join(missing),
                    (' Its columns fit: %s (set tool accordingly).' % ', '.join(fits)) if fits else
                    ' Set history_table if the tool uses another table name.'))

    def records(self, rows, params):
        raise NotImplementedError

    def row_id(self, row):
        raise NotImplementedError

    def rows_of(self, rows, migration_id):
        if self.single_row:
            return rows
        return [r for r in rows if _same(self.row_id(r), migration_id)]

    def sort_key(self, mid):
        return mid

    def status(self, local, rows, params):
        recs = self.records(rows, params)
        applied = unique(r.id for r in recs if r.state == 'applied')
        aset = set(applied)
        failed = unique(r.id for r in recs if r.state == 'failed' and r.id not in aset)
        fset = set(failed)
        out = dict(applied=applied, failed=failed, pending=[], unknown=[], modified=[])
        if local is not None:
            by_id = {m.id: m for m in local}
            out['pending'] = [m.id for m in local if m.id not in aset and m.id not in fset]
            out['unknown'] = [i for i in applied + failed if i not in by_id]
            if self.has_checksum:
                out['modified'] = unique(
                    r.id for r in recs if r.state == 'applied' and r.id in by_id and r.checksum is not None
                    and not self.checksum_matches(by_id[r.id], r.checksum))
            order = {m.id: n for n, m in enumerate(local)}
            known = [i for i in applied if i in order]
            if known:
                out['current'] = [max(known, key=order.get)]
            else:
                out['current'] = [max(applied, key=self.sort_key)] if applied else []
        else:
            out['current'] = [max(applied, key=self.sort_key)] if applied else []
        return out

    # --- resolve ------------------------------------------------------------------
    def plan(self, ctx):
        """Default semantics for one-row-per-migration tools without a failed state."""
        rec = self.state_of(ctx)
        if ctx.state == 'applied':
            if rec == 'applied':
                self.check_same_checksum(ctx)
                return []
            return self.plan_applied(ctx)
        if rec is None:
            return []
        return [Delete(self.where(ctx))]

    def where(self, ctx):
        raise NotImplementedError

    def state_of(self, ctx):
        """'applied', 'failed' or None for the migration of ctx."""
        states = [r.state for r in self.records(ctx.rows, ctx.params) if _same(r.id, ctx.migration)]
        if 'applied' in states:
            return 'applied'
        return 'failed' if states else None

    def check_same_checksum(self, ctx):
        if not self.has_checksum:
            return
        m = ctx.find_local()
        if m is None:
            return
        for r in self.records(ctx.rows, ctx.params):
            if _same(r.id, ctx.migration) and r.state == 'applied' and r.checksum is not None \
                    and not self.checksum_matches(m, r.checksum):
                raise DbopsError(
                    'Migration %s is already recorded as applied, with checksum %s, but %s on disk has checksum %s: '
                    'the file was changed after it was applied. Nothing was changed. Restore the file as it was '
                    'applied, or write the change as a new migration; to re-record it with the new checksum, first '
                    'remove its history row with state=absent (and make sure the schema matches the new file).'
                    % (ctx.migration, self.show_checksum(r.checksum), m.name, self.show_checksum(m.checksum)))

    def show_checksum(self, value):
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).hex()
        return str(value)

    def plan_applied(self, ctx):
        raise NotImplementedError

    # --- helpers --------------------------------------------------------------------
    def require_local(self, ctx, why='it'):
        """The Local of ctx.migration; refuse when the tool needs the file and it is missing."""
        if ctx.local is None:
            raise DbopsError('migrations_path is required to mark a %s migration applied: %s. Give the directory of '
                             'the %s. Nothing was changed.' % (self.name, why, self.what))
        m = ctx.find_local()
        if m is None:
            names = [x.name for x in ctx.local] + [x.id for x in ctx.local]
            hint = similar(str(ctx.migration), names)
            raise DbopsError(
                'Migration %s is not in migrations_path (%d %s there)%s. %s will not record a migration it cannot '
                'find; check the name, or deploy the migration files first. Nothing was changed.' % (
                    ctx.migration, len(ctx.local), self.what, (': similar names: %s' % ', '.join(hint)) if hint else '',
                    self.name))
        return m


def verdict(status, migrations_path_given):
    """clean and the one-line summary of a status dict."""
    parts = []
    for key in ('failed', 'unknown', 'modified', 'pending'):
        items = status.get(key) or []
        if items:
            shown = ', '.join(str(i) for i in items[:3]) + (', ...' if len(items) > 3 else '')
            parts.append('%d %s (%s)' % (len(items), key, shown))
    clean = not parts
    return clean, parts


# --- migration_apply: how a tool runs one pending migration -------------------------------------

class Unit:
    """One pending migration as its tool runs it (migration_apply).

    pieces: the SQL texts sent in order (one script, or its statements where the tool splits it);
    transaction: whether the tool wraps them in BEGIN ... COMMIT;
    before: history Ops the tool commits before the script (Prisma's started row, golang-migrate's dirty
    version); first: history Ops in the script's transaction before the script (sqlx on MySQL);
    inside(ms): history Ops in the script's transaction after it (dbmate, goose, sqlx, Flyway);
    after(ms): history Ops committed after the script (Prisma's finished_at, golang-migrate's clean
    version, sqlx's execution_time); failed(error): history Ops the tool writes after a failure
    (Prisma's logs; Flyway's success = false row where the engine cannot roll DDL back);
    undo: history Ops that take back `before` when the script was rolled back whole after lock timeouts
    (the run stops with nothing changed instead of a failed history); note: one line for the operator;
    inside_timed: inside(ms) uses the duration (Flyway's execution_time), so its rows are known only after
    the script ran (otherwise, on PostgreSQL, they are sent in the same query as the script).
    """

    def __init__(self, local, pieces, transaction, before=(), first=(), inside=None, after=None, failed=None,
                 undo=(), note='', inside_timed=False):
        self.local = local
        self.pieces = list(pieces)
        self.transaction = transaction
        self.before = list(before)
        self.first = list(first)
        self.inside = inside or (lambda ms: [])
        self.after = after or (lambda ms: [])
        self.failed = failed or (lambda error: [])
        self.undo = list(undo)
        self.note = note
        self.inside_timed = inside_timed
        self.groupable = None  # whether it may run in a savepoint of a group (migrations/group.py), once known


def pin(local):
    """Read the file's bytes once and keep them: migration_apply lints, runs and checksums these bytes (the tools
    that record a checksum keep the bytes they computed it from at scan time), so a file changed on disk during
    the run can never run text the lint gate did not see. Returns the bytes."""
    if local.meta.get('data') is None:
        try:
            local.meta['data'] = read_bytes(local.path)
        except OSError as e:
            raise DbopsError('Cannot read the migration %s (%s): %s. Nothing was run.'
                             % (local.name, local.path, e.strerror or e)) from None
    return local.meta['data']


def read_text(local):
    """The text of a migration file as the tools read it (UTF-8; a BOM is dropped)."""
    text = pin(local).decode('utf-8')
    return text[1:] if text.startswith('\ufeff') else text


def native_tools():
    """The tools migration_apply runs itself (their migrations are SQL files)."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import TOOLS
    return [n for n, t in TOOLS.items() if getattr(t, 'native_apply', False)]
