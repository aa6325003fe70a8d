# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""constraint_ensure on MySQL/MariaDB: each constraint with the least locking the server allows.

* FOREIGN KEY: InnoDB adds one in place (ALGORITHM=INPLACE, LOCK=NONE: writes go on) only with
  foreign_key_checks=0 on the session, and then does not check the existing rows. So the ALTER
  runs between SET SESSION foreign_key_checks = 0 / = 1 (reset whatever happens), and the rows are
  then proved with an anti-join (NOT EXISTS on the referenced table, rows with a NULL in the key
  columns excepted, as MATCH SIMPLE does). Rows written after the ALTER are checked by the server
  itself (the application's sessions keep foreign_key_checks=1), and the ALTER's final metadata
  lock waits for every open transaction on the table, so the proof sees every row the constraint
  did not check. A failed proof drops the foreign key again (and the index InnoDB created for it,
  when the table had none on those columns) and fails: nothing is left. foreign_key_checks=0 also
  lets the server accept a reference to a missing table or column: both are checked here first,
  with the index the referenced table must have.
* CHECK (enforced since MariaDB 10.2.1 and MySQL 8.0.16): the server can only add one by copying
  the table (it checks every row), so it needs allow_rewrite (ALGORITHM=COPY, writes blocked).
  The requested expression is compared with the existing one as the server prints both (SHOW
  CREATE TABLE of an empty temporary copy of the table with the check added).
* UNIQUE: ADD CONSTRAINT ... UNIQUE, ALGORITHM=INPLACE, LOCK=NONE (an in-place unique index build).
* PRIMARY KEY (always named PRIMARY): ADD PRIMARY KEY, ALGORITHM=INPLACE, LOCK=NONE (the table is
  rebuilt in place, writes go on); its columns become NOT NULL, so NULLs fail first, counted.
  Dropping one needs a table copy (allow_rewrite).
Every statement runs with lock_wait_timeout and the lock retries; a refused INPLACE falls back
to ALGORITHM=COPY only with allow_rewrite.
"""

from __future__ import annotations

import re

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, Plan, Step, did_you_mean
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import quote_ident

NOTHING = 'Nothing was changed.'
RULES = {'NO ACTION': 'no action', 'RESTRICT': 'restrict', 'CASCADE': 'cascade', 'SET NULL': 'set null',
         'SET DEFAULT': 'set default'}
KINDS = {'FOREIGN KEY': 'foreign_key', 'CHECK': 'check', 'UNIQUE': 'unique', 'PRIMARY KEY': 'primary_key'}
FK_OFF = 'SET SESSION foreign_key_checks = 0'
FK_ON = 'SET SESSION foreign_key_checks = 1'
CHECK_LINE = re.compile(r'^\s*CONSTRAINT (`(?:[^`]|``)+`) CHECK \((.*)\),?$')


def check_options(p, refuse):
    """MySQL/MariaDB-only refusals (refuse(msg) raises)."""
    if p.get('schema'):
        refuse('schema is PostgreSQL only; on MySQL/MariaDB the schema is the database option.')
    if (p.get('references') or {}).get('schema'):
        refuse('references.schema is PostgreSQL only; constraint_ensure references tables of the same database on '
               'MySQL/MariaDB.')
    if p['state'] == 'present' and not p.get('validate', True):
        refuse('validate: false is PostgreSQL only (NOT VALID); MySQL/MariaDB have no such state, so a foreign key '
               'or CHECK added here always holds for every row.')
    if p['state'] == 'present' and p.get('replace'):
        refuse('replace is PostgreSQL only in this release; on MySQL/MariaDB drop the constraint (state: absent) '
               'and add it again, or add the new one under another name first.')
    if p.get('type') == 'primary_key' and p['name'] != 'PRIMARY':
        refuse('MySQL/MariaDB name every primary key PRIMARY: set name: PRIMARY (it is %r).' % p['name'])


def _version(db):
    return tuple(int(x) for x in re.findall(r'\d+', db.version.split('-')[0])[:3])


def _columns(db, table):
    return [r[0] for r in db.column_rows(table)]


def _require_columns(db, table, columns):
    have = {r[0]: r for r in db.column_rows(table)}
    for col in columns:
        if col not in have:
            db.fail('Column %s does not exist in table %s.%s %s' % (
                quote_ident(col), quote_ident(table), did_you_mean(col, list(have)), NOTHING))
    return have


def _indexes(db, table):
    """{index name: (unique, [columns in order])} of the table."""
    out = {}
    for name, non_unique, col in db.fetchall(
            'SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = '
            'DATABASE() AND TABLE_NAME = %s ORDER BY INDEX_NAME, SEQ_IN_INDEX', [table]):
        out.setdefault(name, (not int(non_unique), []))[1].append(col)
    return out


def _has_leading_index(indexes, columns):
    return any(cols[:len(columns)] == list(columns) for _unique, cols in indexes.values())


def _check_clauses(db, table):
    """{name: expression} of the CHECK constraints of `table`, as SHOW CREATE TABLE prints them."""
    create = db.fetchone('SHOW CREATE TABLE %s' % quote_ident(table))[1]
    out = {}
    for line in create.splitlines():
        m = CHECK_LINE.match(line)
        if m:
            out[m.group(1)[1:-1].replace('``', '`')] = m.group(2)
    return out


def _current(db, table, name):
    rows = db.fetchall('SELECT CONSTRAINT_NAME, CONSTRAINT_TYPE FROM information_schema.TABLE_CONSTRAINTS '
                       'WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s', [table])
    exact = [r for r in rows if r[0] == name]
    if not exact:
        near = [r[0] for r in rows if r[0].lower() == name.lower()]
        if near:
            db.fail('The constraint is named %s on %s, not %s (constraint names are case-insensitive in MySQL/MariaDB): '
                    'give its exact name. %s' % (quote_ident(near[0]), quote_ident(table), quote_ident(name), NOTHING))
        return None
    kind = KINDS.get(exact[0][1], exact[0][1].lower())
    d = dict(name=name, type=kind, valid=True, deferrable=False)
    if kind in ('unique', 'primary_key'):
        d['columns'] = _indexes(db, table).get(name, (True, []))[1]
    elif kind == 'foreign_key':
        rule = db.fetchone('SELECT UPDATE_RULE, DELETE_RULE, REFERENCED_TABLE_NAME, UNIQUE_CONSTRAINT_SCHEMA FROM '
                           'information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE() AND '
                           'TABLE_NAME = %s AND CONSTRAINT_NAME = %s', [table, name])
        cols = db.fetchall('SELECT COLUMN_NAME, REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE '
                           'TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND CONSTRAINT_NAME = %s AND '
                           'REFERENCED_TABLE_NAME IS NOT NULL ORDER BY ORDINAL_POSITION', [table, name])
        d['columns'] = [r[0] for r in cols]
        d['references'] = dict(schema=rule[3], table=rule[2], columns=[r[1] for r in cols])
        d['on_update'], d['on_delete'] = RULES.get(rule[0], rule[0]), RULES.get(rule[1], rule[1])
    elif kind == 'check':
        d['expression'] = _check_clauses(db, table).get(name)
    return d


def _same_rule(a, b):
    """InnoDB checks NO ACTION at once, exactly as RESTRICT (and writes RESTRICT when none is given)."""
    norm = {'no action': 'restrict'}
    return norm.get(a, a) == norm.get(b, b)


def _probe_check(db, table, expression, target):
    """The server's own print of CHECK (expression), on an empty temporary copy of the table."""
    probe = quote_ident('dbops_check_probe')
    db.execute('DROP TEMPORARY TABLE IF EXISTS %s' % probe)
    try:
        db.execute('CREATE TEMPORARY TABLE %s LIKE %s' % (probe, quote_ident(table)))
        try:
            db.execute('ALTER TABLE %s ADD CONSTRAINT `dbops_probe` CHECK (%s)' % (probe, expression))
        except DbopsError as e:
            raise DbopsError('The server does not accept this CHECK on %s: %s %s' % (target, e, NOTHING))
        return _check_clauses(db, 'dbops_check_probe').get('dbops_probe')
    finally:
        db.execute('DROP TEMPORARY TABLE IF EXISTS %s' % probe)


def plan(db, spec):
    table, name, kind = spec['table'], spec['name'], spec.get('type')
    db.require_one_statement_protocol()
    db.require_table(table)
    qt, qn = quote_ident(table), quote_ident(name)
    label = '%s.%s' % (qt, qn)
    current = _current(db, table, name)
    if spec['state'] == 'absent':
        if current is None:
            return Plan(label, before=None, after=None)
        drop = {'foreign_key': 'DROP FOREIGN KEY %s' % qn, 'unique': 'DROP INDEX %s' % qn,
                'primary_key': 'DROP PRIMARY KEY',
                'check': ('DROP CONSTRAINT %s' if db.flavour == 'mariadb' else 'DROP CHECK %s') % qn}[current['type']]
        return Plan(label, before=current, after=None,
                    steps=[_algorithm('ALTER TABLE %s %s' % (qt, drop), 'drop the constraint')])
    if current is not None and current['type'] != kind:
        db.fail('%s exists as a %s constraint, not %s. Drop it first (state: absent) or choose another name. %s'
                % (label, current['type'], kind, NOTHING))
    if kind == 'check':
        desired, steps = _plan_check(db, spec, qt, qn, label)
    elif kind == 'foreign_key':
        desired, steps = _plan_fk(db, spec, qt, qn, label)
    else:
        desired, steps = _plan_key(db, spec, qt, qn, label, current)
    if current is not None:
        differences = [k for k in desired if k not in ('name', 'valid') and not (
            k in ('on_delete', 'on_update') and _same_rule(current.get(k), desired[k])) and
            current.get(k) != desired.get(k)]
        if not differences:
            return Plan(label, before=current, after=current)
        return Plan(label, before=current, after=desired, differences=differences, refused=True)
    if steps and steps[0].target == 'copy' and not spec.get('allow_rewrite'):
        db.fail('The server can add a CHECK only by copying %s (it checks every row; writes are blocked while it '
                'copies). Set allow_rewrite: true to accept that, in a maintenance window. Statement: %s %s'
                % (qt, steps[0].sql, NOTHING), refused=steps[0].sql)
    return Plan(label, before=None, after=desired, steps=steps)


def _algorithm(base, why):
    copy = Step(base + ', ALGORITHM=COPY', why + ' (copying the table, writes blocked)', requires='allow_rewrite')
    return Step(base + ', ALGORITHM=INPLACE, LOCK=NONE', why + ' (in place, writes allowed)', alternative=copy)


def _plan_check(db, spec, qt, qn, label):
    v, mariadb = _version(db), db.flavour == 'mariadb'
    if (mariadb and v < (10, 2, 1)) or (not mariadb and v < (8, 0, 16)):
        db.fail('%s %s parses CHECK constraints but does not enforce them (MariaDB 10.2.1 and MySQL 8.0.16 do). %s'
                % ('MariaDB' if mariadb else 'MySQL', db.version, NOTHING))
    want = _probe_check(db, spec['table'], spec['expression'], label)
    desired = dict(name=spec['name'], type='check', valid=True, deferrable=False, expression=want)
    base = 'ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)' % (qt, qn, spec['expression'])
    # The server checks every existing row by copying the table: there is no in-place CHECK.
    return desired, [Step(base + ', ALGORITHM=COPY', 'add the CHECK (the server copies the table to check every row; '
                          'writes blocked)', requires='allow_rewrite', target='copy')]


def _plan_fk(db, spec, qt, qn, label):
    table = spec['table']
    ref = spec['references']
    rtable = ref['table']
    _require_columns(db, table, spec['columns'])
    if rtable not in db.table_names():
        db.fail('Table %s (references.table) does not exist in database %s.%s With foreign_key_checks=0 the server '
                'would accept a reference to it anyway, so it is refused here. %s' % (
                    quote_ident(rtable), db.params['database'], did_you_mean(rtable, db.table_names()), NOTHING))
    _require_columns(db, rtable, ref['columns'])
    if not _has_leading_index(_indexes(db, rtable), ref['columns']):
        db.fail('%s has no index that starts with (%s), which a foreign key needs on the referenced table. Build one '
                'first (index_ensure, or the unique/primary key it references). %s'
                % (quote_ident(rtable), ', '.join(ref['columns']), NOTHING))
    database = db.fetchone('SELECT DATABASE()')[0]
    desired = dict(name=spec['name'], type='foreign_key', valid=True, deferrable=False, columns=list(spec['columns']),
                   references=dict(schema=database, table=rtable, columns=list(ref['columns'])),
                   on_delete=spec['on_delete'], on_update=spec['on_update'])
    cols = ', '.join(quote_ident(c) for c in spec['columns'])
    add = 'ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE %s ON UPDATE %s' % (
        qt, qn, cols, quote_ident(rtable), ', '.join(quote_ident(c) for c in ref['columns']),
        spec['on_delete'].upper(), spec['on_update'].upper())
    pairs = zip(spec['columns'], ref['columns'])
    match = ' AND '.join('p.%s = c.%s' % (quote_ident(r), quote_ident(c)) for c, r in pairs)
    not_null = ' AND '.join('c.%s IS NOT NULL' % quote_ident(c) for c in spec['columns'])
    proof = 'SELECT COUNT(*) FROM %s AS c WHERE %s AND NOT EXISTS (SELECT 1 FROM %s AS p WHERE %s)' % (
        qt, not_null, quote_ident(rtable), match)
    undo = ['ALTER TABLE %s DROP FOREIGN KEY %s, ALGORITHM=INPLACE, LOCK=NONE' % (qt, qn)]
    if not _has_leading_index(_indexes(db, table), spec['columns']):
        # InnoDB creates an index named after the constraint on the referencing columns.
        undo.append('ALTER TABLE %s DROP INDEX %s, ALGORITHM=INPLACE, LOCK=NONE' % (qt, qn))
    steps = [Step(FK_OFF, 'in place needs foreign_key_checks=0 (existing rows are proved below)', target='fk_off'),
             Step(add + ', ALGORITHM=INPLACE, LOCK=NONE', 'add the foreign key in place (writes allowed)',
                  target='add', alternative=Step(add + ', ALGORITHM=COPY', 'add the foreign key by copying the table',
                                                 requires='allow_rewrite')),
             Step(FK_ON, 'foreign_key_checks back on', target='fk_on'),
             Step(proof, 'prove the existing rows: the anti-join must count 0', target=('prove', undo))]
    return desired, steps


def _plan_key(db, spec, qt, qn, label, current):
    table, kind = spec['table'], spec['type']
    have = _require_columns(db, table, spec['columns'])
    desired = dict(name=spec['name'], type=kind, valid=True, deferrable=False, columns=list(spec['columns']))
    if current is not None:
        return desired, []
    cols = ', '.join(quote_ident(c) for c in spec['columns'])
    if kind == 'unique':
        other = _indexes(db, table).get(spec['name'])
        if other is not None:
            db.fail('A non-unique index named %s exists on %s; choose another name, or drop it with index_ensure '
                    '(state: absent). %s' % (qn, qt, NOTHING))
        return desired, [_algorithm('ALTER TABLE %s ADD CONSTRAINT %s UNIQUE (%s)' % (qt, qn, cols),
                                    'build the unique index')]
    if 'PRIMARY' in _indexes(db, table):
        db.fail('%s already has a primary key. %s' % (qt, NOTHING))
    for col in spec['columns']:
        if have[col][2] == 'YES':
            nulls = db.fetchone('SELECT COUNT(*) FROM %s WHERE %s IS NULL' % (qt, quote_ident(col)))[0]
            if nulls:
                db.fail('Cannot make %s a primary key: %d row(s) have NULL in %s. %s'
                        % (label, nulls, quote_ident(col), NOTHING), null_count=nulls)
    return desired, [_algorithm('ALTER TABLE %s ADD PRIMARY KEY (%s)' % (qt, cols),
                                'add the primary key (the table is rebuilt in place, writes allowed)')]


def apply(db, the_plan, spec):
    allow = dict(allow_rewrite=spec.get('allow_rewrite'))
    checks_off = False
    try:
        for step in the_plan.steps:
            if db.check_mode:
                db.run_step(step, allow)
            elif step.target in ('fk_off', 'fk_on'):
                db.execute(step.sql)
                db.queries.append(step.sql)
                checks_off = step.target == 'fk_off'
            elif isinstance(step.target, tuple):
                _prove(db, step, spec)
            else:
                try:
                    db.run_step(step, allow)
                except DbopsError as e:
                    raise DbopsError('%s%s' % (e, _hint(str(e), spec)), **e.details)
    finally:
        if checks_off:
            db.execute(FK_ON)
            db.queries.append(FK_ON)


def _hint(message, spec):
    if 'Duplicate entry' in message:
        return (' Existing rows have duplicate values in (%s): remove the duplicates first. %s'
                % (', '.join(spec['columns']), NOTHING))
    if re.search(r'CONSTRAINT .* failed', message):
        return ' Existing rows violate the CHECK: fix them first. %s' % NOTHING
    return ''


def _prove(db, step, spec):
    undo = step.target[1]
    why = None
    try:
        bad = db.fetchone(step.sql)[0]
    except Exception as e:  # pylint: disable=broad-except
        # statement_timeout, a lost connection...: unproved, so not kept
        bad, why = None, db.redact(e)
    db.queries.append(step.sql)
    if bad == 0:
        return
    left = _undo(db, undo)
    ref = spec['references']
    if bad is None:
        raise DbopsError('The existing rows of %s could not be proved against %s (%s), so the foreign key added in '
                         'place is not kept. %s Run again (with a longer statement_timeout if it was that).'
                         % (quote_ident(spec['table']), quote_ident(ref['table']), why, left))
    raise DbopsError('%d existing row(s) of %s have a (%s) with no match in %s (%s), which the foreign key added in '
                     'place did not check. %s Fix or delete those rows, then run again.' % (
                         bad, quote_ident(spec['table']), ', '.join(spec['columns']), quote_ident(ref['table']),
                         ', '.join(ref['columns']), left), violating_rows=bad)


def _undo(db, undo):
    """Drop the foreign key this run added (and the index InnoDB made for it); a sentence for the message."""
    done = []
    try:
        for stmt in undo:
            db.with_lock_retries(lambda s=stmt: db.execute(s), stmt)
            db.queries.append(stmt)
            done.append(stmt)
        return 'It was dropped again (%s): nothing is left.' % '; '.join(done)
    except DbopsError as e:
        return ('Dropping it again failed (%s): the foreign key is still there and checks new rows only; drop it '
                '(state: absent) or fix the rows.' % db.redact(e))


def read(db, spec):
    if spec['table'] not in db.table_names():
        return None
    return _current(db, spec['table'], spec['name'])
