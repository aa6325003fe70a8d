# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""constraint_ensure on PostgreSQL: add constraints without a long lock on a live table.

* FOREIGN KEY and CHECK: ADD CONSTRAINT ... NOT VALID (metadata only, brief lock), then VALIDATE
  CONSTRAINT in its own statement (scans under SHARE UPDATE EXCLUSIVE (the referenced table: ROW
  SHARE): writes go on). A leftover NOT VALID constraint of the same definition is validated (resume).
  A VALIDATE that finds violating rows drops the NOT VALID constraint this run added (nothing
  changed) and says how many rows violate it (FOREIGN KEY: counted with an anti-join).
* UNIQUE and PRIMARY KEY: the unique index is built CONCURRENTLY (online_ddl/index.py, with its
  INVALID-index repair), then ADD CONSTRAINT ... USING INDEX (brief lock). A PRIMARY KEY needs its
  columns NOT NULL first, or USING INDEX scans the table under ACCESS EXCLUSIVE: the online NOT
  NULL sequence (online_ddl/not_null.py) runs for each nullable column before.

Definitions are compared from the catalog: FOREIGN KEY by columns, referenced table and columns,
ON DELETE / ON UPDATE and MATCH; UNIQUE / PRIMARY KEY by columns; CHECK by the server's own deparse
of the expression, read back from an empty temporary copy of the table in a transaction that is
always rolled back.
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, Plan, Step, did_you_mean
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import index as online_index
from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import not_null as online_not_null


def _mysql():
    """The MySQL/MariaDB half (constraint_mysql), imported when a MySQL/MariaDB item is planned: it imports PyMySQL,
    which a PostgreSQL run never needs."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.online_ddl import constraint_mysql  # pylint: disable=import-outside-toplevel
    return constraint_mysql


NOTHING = 'Nothing was changed.'
KINDS = {'f': 'foreign_key', 'c': 'check', 'u': 'unique', 'p': 'primary_key', 'x': 'exclusion', 't': 'trigger'}
ACTIONS = {'a': 'no action', 'r': 'restrict', 'c': 'cascade', 'n': 'set null', 'd': 'set default'}
SQL_ACTIONS = {'no action': 'NO ACTION', 'restrict': 'RESTRICT', 'cascade': 'CASCADE', 'set null': 'SET NULL',
               'set default': 'SET DEFAULT'}


def _refuse(msg):
    raise sqlcheck.SqlRefused('%s %s' % (msg, sqlcheck.NOTHING))


def check_options(p):
    if p['engine'] == 'sqlite':
        _refuse('constraint_ensure supports PostgreSQL and MySQL/MariaDB: SQLite can add a constraint only by '
                'rebuilding the table.')
    if p['engine'] == 'mysql':
        _mysql().check_options(p, _refuse)
    elif p.get('allow_rewrite'):
        _refuse('allow_rewrite is MySQL/MariaDB only: on PostgreSQL no constraint_ensure step rewrites the table.')
    if p['state'] == 'absent':
        return
    kind = p['type']
    if kind is None:
        raise sqlcheck.SqlRefused('type is required with state=present. %s' % sqlcheck.NOTHING)
    if kind == 'check':
        if not p.get('expression'):
            raise sqlcheck.SqlRefused('type=check needs expression. %s' % sqlcheck.NOTHING)
        sqlcheck.expression(p['expression'], p['engine'], 'expression')
        if p.get('columns') or p.get('references'):
            raise sqlcheck.SqlRefused('type=check takes expression only, not columns or references. %s'
                                      % sqlcheck.NOTHING)
        return
    if p.get('expression') is not None:
        raise sqlcheck.SqlRefused('expression is for type=check only. %s' % sqlcheck.NOTHING)
    if not p.get('columns') or any(not c for c in p['columns']):
        raise sqlcheck.SqlRefused('type=%s needs columns (non-empty names). %s' % (kind, sqlcheck.NOTHING))
    if kind == 'foreign_key':
        ref = p.get('references') or {}
        if not ref.get('table') or not ref.get('columns'):
            raise sqlcheck.SqlRefused('type=foreign_key needs references.table and references.columns. %s'
                                      % sqlcheck.NOTHING)
        if len(ref['columns']) != len(p['columns']):
            raise sqlcheck.SqlRefused('references.columns must name as many columns as columns (%d, not %d). %s'
                                      % (len(p['columns']), len(ref['columns']), sqlcheck.NOTHING))
    elif p.get('references'):
        raise sqlcheck.SqlRefused('references is for type=foreign_key only. %s' % sqlcheck.NOTHING)


def _find_table(db, schema, table):
    oid = db.find_table(schema, table)
    target = db.display(schema, table)
    if oid is None:
        kind = db.relation_kind(schema, table)
        if kind:
            db.fail('%s is a %s, not a table. %s' % (target, kind, NOTHING))
        if not db.schema_exists(schema):
            db.fail('Schema %s does not exist.%s %s' % (schema, did_you_mean(schema, db.schema_names()), NOTHING))
        db.fail('Table %s does not exist in database %s.%s %s' % (
            target, db.params['database'], did_you_mean(table, db.table_names(schema)), NOTHING))
    return oid, target


def _require_columns(db, oid, target, columns):
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    have = {c['name']: c for c in db.columns(oid)}
    for col in columns:
        if col not in have:
            db.fail('Column %s does not exist in table %s.%s %s' % (
                sql.Identifier(col).as_string(db.conn), target, did_you_mean(col, list(have)), NOTHING))
    return have


_CURRENT = (
    "SELECT con.contype, con.convalidated, pg_get_constraintdef(con.oid, true), "
    "array(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY u(n, i) JOIN pg_attribute a "
    "ON a.attrelid = con.conrelid AND a.attnum = u.n ORDER BY u.i), "
    "rn.nspname, rc.relname, "
    "array(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY u(n, i) JOIN pg_attribute a "
    "ON a.attrelid = con.confrelid AND a.attnum = u.n ORDER BY u.i), "
    "con.confdeltype, con.confupdtype, con.confmatchtype, con.condeferrable, con.conindid "
    "FROM pg_constraint con LEFT JOIN pg_class rc ON rc.oid = con.confrelid "
    "LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace WHERE con.conrelid = %s AND con.conname = %s")


def _current(db, table_oid, name):
    r = db.fetchone(_CURRENT, [table_oid, name])
    if r is None:
        return None
    d = dict(name=name, type=KINDS.get(r[0], r[0]), valid=bool(r[1]), definition=r[2])
    if r[0] in ('f', 'u', 'p'):
        d['columns'] = list(r[3])
    if r[0] == 'f':
        d['references'] = dict(schema=r[4], table=r[5], columns=list(r[6]))
        d['on_delete'], d['on_update'] = ACTIONS.get(r[7]), ACTIONS.get(r[8])
        d['match'] = {'s': 'simple', 'f': 'full', 'p': 'partial'}.get(r[9])
    if r[0] == 'c':
        d['expression'] = r[2].replace(' NOT VALID', '')
    d['deferrable'] = bool(r[10])
    return d


def _probe_check(db, schema, table, expression, target):
    """The server's deparse of CHECK (expression), on an empty temporary copy of the table, rolled back."""
    import psycopg  # pylint: disable=import-outside-toplevel
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    probe = sql.Identifier('pg_temp', 'dbops_constraint_probe')
    try:
        with db.conn.transaction(force_rollback=True):
            db.conn.execute(sql.SQL('CREATE TEMPORARY TABLE {} (LIKE {})').format(probe, db.qualified(schema, table)))
            db.conn.execute(sql.SQL('ALTER TABLE {} ADD CONSTRAINT dbops_probe CHECK (').format(probe)
                            + sql.SQL(expression) + sql.SQL(')'), prepare=True)
            return db.fetchone("SELECT pg_get_constraintdef(oid, true) FROM pg_constraint WHERE conrelid = "
                               "'pg_temp.dbops_constraint_probe'::regclass AND conname = 'dbops_probe'")[0]
    except psycopg.Error as e:
        raise DbopsError('PostgreSQL does not accept this CHECK on %s: %s. %s'
                         % (target, (str(e).strip().splitlines() or [''])[0], NOTHING))


def plan(db, spec):
    """The Plan (engines/base.py) of constraint_ensure."""
    if db.engine == 'mysql':
        return _mysql().plan(db, spec)
    d = _pg_plan(db, spec)
    return Plan(d['target'], before=d.get('before'), after=d.get('after'), steps=d.get('steps'),
                differences=d.get('differences'), refused=bool(d.get('refused')))


def _pg_plan(db, spec):
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    schema = spec.get('schema') or db.current_schema()
    table, name, kind = spec['table'], spec['name'], spec.get('type')
    oid, target = _find_table(db, schema, table)
    qtable, qname = db.qualified(schema, table), sql.Identifier(name)
    label = '%s.%s' % (target, qname.as_string(db.conn))
    current = _current(db, oid, name)
    res = dict(target=label, before=current)
    if spec['state'] == 'absent':
        if current is None:
            return dict(res, steps=[], after=None)
        return dict(res, after=None, steps=[Step(db.render(sql.SQL('ALTER TABLE {} DROP CONSTRAINT {}').format(
            qtable, qname)), 'drop the constraint')])
    if current is not None and current['type'] != kind:
        db.fail('%s exists as a %s constraint, not %s. Drop it first (state: absent) or choose another name. %s'
                % (label, current['type'], kind, NOTHING))

    if kind in ('unique', 'primary_key'):
        return _plan_unique(db, spec, schema, oid, target, label, current, res)

    if kind == 'check':
        want_def = _probe_check(db, schema, table, spec['expression'], target)
        desired = dict(name=name, type='check', valid=True, definition=want_def, expression=want_def,
                       deferrable=False)
        add = sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} CHECK (').format(qtable, qname) + \
            sql.SQL(spec['expression']) + sql.SQL(') NOT VALID')
    else:
        _require_columns(db, oid, target, spec['columns'])
        ref = spec['references']
        rschema = ref.get('schema') or schema
        roid, rtarget = _find_table(db, rschema, ref['table'])
        _require_columns(db, roid, rtarget, ref['columns'])
        desired = dict(name=name, type='foreign_key', valid=True, columns=list(spec['columns']),
                       references=dict(schema=rschema, table=ref['table'], columns=list(ref['columns'])),
                       on_delete=spec['on_delete'], on_update=spec['on_update'], match='simple', deferrable=False)
        add = sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON DELETE {} '
                      'ON UPDATE {} NOT VALID').format(
            qtable, qname, sql.SQL(', ').join(sql.Identifier(c) for c in spec['columns']),
            db.qualified(rschema, ref['table']), sql.SQL(', ').join(sql.Identifier(c) for c in ref['columns']),
            sql.SQL(SQL_ACTIONS[spec['on_delete']]), sql.SQL(SQL_ACTIONS[spec['on_update']]))
    validate = Step(db.render(sql.SQL('ALTER TABLE {} VALIDATE CONSTRAINT {}').format(qtable, qname)),
                    'validate the constraint (scans; writes go on)', target='validate')
    add_step = Step(db.render(add), 'add the constraint NOT VALID (no scan)', target='add')
    compare = [k for k in desired if k not in ('name', 'valid', 'definition')]
    if current is not None:
        differences = [k for k in compare if current.get(k) != desired.get(k)]
        if not differences:
            if current['valid'] or not spec.get('validate', True):
                return dict(res, steps=[], after=current)
            return dict(res, after=desired, differences=['valid'], steps=[validate])
        if not spec.get('replace'):
            return dict(res, steps=[], after=desired, differences=differences, refused=True)
        drop = Step(db.render(sql.SQL('ALTER TABLE {} DROP CONSTRAINT {}').format(qtable, qname)),
                    'drop the old definition')
        steps = [drop, add_step] + ([validate] if spec.get('validate', True) else [])
        return dict(res, after=desired, differences=differences, steps=steps)
    if not spec.get('validate', True):
        desired['valid'] = False
    return dict(res, after=desired, steps=[add_step] + ([validate] if spec.get('validate', True) else []))


def _plan_unique(db, spec, schema, oid, target, label, current, res):
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    kind, name, table = spec['type'], spec['name'], spec['table']
    have = _require_columns(db, oid, target, spec['columns'])
    desired = dict(name=name, type=kind, valid=True, columns=list(spec['columns']), deferrable=False)
    if current is not None:
        differences = [k for k in ('columns', 'deferrable') if current.get(k) != desired.get(k)]
        if not differences:
            return dict(res, steps=[], after=current)
        if not spec.get('replace'):
            return dict(res, steps=[], after=desired, differences=differences, refused=True)
        db.fail('Replacing a %s constraint (%s) is not supported: drop it (state: absent) and add it again, or add the '
                'new one under another name first. %s' % (kind.replace('_', ' '), label, NOTHING))
    if kind == 'primary_key':
        other = db.fetchone("SELECT conname FROM pg_constraint WHERE conrelid = %s AND contype = 'p'", [oid])
        if other:
            db.fail('%s already has a primary key (%s). %s' % (target, other[0], NOTHING))
    steps = []
    if kind == 'primary_key':
        for col in spec['columns']:
            if have[col]['nullable']:
                nulls = db.count_rows(schema, table, where_null=col)
                if nulls:
                    db.fail('Cannot make %s a primary key: %d row(s) have NULL in %s. %s'
                            % (label, nulls, col, NOTHING), null_count=nulls)
                steps += online_not_null.steps(db, schema, table, col) or [Step(db.render(
                    sql.SQL('ALTER TABLE {} ALTER COLUMN {} SET NOT NULL').format(
                        db.qualified(schema, table), sql.Identifier(col))), 'set NOT NULL')]
    index_spec = dict(db.params, schema=schema, table=table, name=name, columns=list(spec['columns']), expressions=[],
                      unique=True, where=None, method=None, state='present', replace=False, concurrently=True)
    iplan = online_index.plan(db, index_spec)
    if iplan.refused:
        db.fail('An index named %s exists on %s with another definition (%s); a %s constraint USING INDEX needs a '
                'plain unique btree index on exactly %s. %s' % (
                    name, target, ', '.join(iplan.differences), kind.replace('_', ' '),
                    ', '.join(spec['columns']), NOTHING))
    using = sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}').format(
        db.qualified(schema, table), sql.Identifier(name), sql.SQL('PRIMARY KEY' if kind == 'primary_key' else 'UNIQUE'),
        sql.Identifier(name))
    return dict(res, after=desired, steps=steps + [Step(s.sql, s.why, target=('index', s.target)) for s in iplan.steps]
                + [Step(db.render(using), 'attach the index as the constraint (brief lock)')])


def apply(db, the_plan, spec):
    if db.engine == 'mysql':
        return _mysql().apply(db, the_plan, spec)
    schema = spec.get('schema') or db.current_schema()
    added = False
    for step in the_plan.steps:
        if db.check_mode:
            db.queries.append(step.sql)
            continue
        if isinstance(step.target, tuple):  # an index step: online_index's own runner (INVALID repair)
            online_index.apply(db, Plan(the_plan.target, steps=[Step(step.sql, step.why, target=step.target[1])]),
                               dict(spec, schema=schema))
            continue
        try:
            db.with_lock_retries(lambda s=step: db.execute(s.sql), step.sql)
        except DbopsError as e:
            if step.target == 'validate' and added:
                raise DbopsError('%s%s' % (e, _undo_add(db, spec, schema)), **e.details)
            raise
        db.queries.append(step.sql)
        added = added or step.target == 'add'
    return None


def _undo_add(db, spec, schema):
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    drop = db.render(sql.SQL('ALTER TABLE {} DROP CONSTRAINT {}').format(
        db.qualified(schema, spec['table']), sql.Identifier(spec['name'])))
    try:
        db.with_lock_retries(lambda: db.execute(drop), drop)
        db.queries.append(drop)
        return (' Existing rows violate it: the NOT VALID constraint this run added was dropped again (%s). Fix the '
                'rows, then run again.' % drop)
    except Exception as e:  # pylint: disable=broad-except
        return (' The NOT VALID constraint this run added could not be dropped (%s): it stays NOT VALID (it checks new '
                'rows only); fix the rows and run again to validate it.' % db.redact(e))


def read(db, spec):
    if db.engine == 'mysql':
        return _mysql().read(db, spec)
    schema = spec.get('schema') or db.current_schema()
    oid = db.find_table(schema, spec['table'])
    return _current(db, oid, spec['name']) if oid else None
