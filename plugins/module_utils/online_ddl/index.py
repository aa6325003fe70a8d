# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""index_ensure: plan and build an index without blocking the application's writes.

plan(db, spec) -> dict(steps, before, after, target, differences, refused, repaired)
apply(db, plan, spec) runs the steps (check mode: only records them).

PostgreSQL: CREATE/DROP INDEX CONCURRENTLY on the adapter's autocommit connection (so outside any
transaction block), sent over the extended protocol (one statement). The requested definition is
read back from the server itself: the index is created on an empty temporary copy of the table's
columns (CREATE TEMPORARY TABLE ... (LIKE table)) inside a transaction that is always rolled back,
and its catalog entry (access method, key columns/expressions as pg_get_indexdef prints them,
operator classes, collations, ordering options, INCLUDE columns, predicate) is compared with the
existing index's. An INVALID index of the name (a CONCURRENTLY build that failed, was cancelled by
our own lock_timeout, or whose session was killed) is dropped CONCURRENTLY and built again. A
different definition is replaced (replace: true) by building the new index under a temporary name,
dropping the old one CONCURRENTLY and renaming: the table is never without an index of the name's
purpose.

MySQL/MariaDB: ALTER TABLE ... ADD/DROP INDEX ..., ALGORITHM=INPLACE, LOCK=NONE; a server that
refuses (a change only a table copy can do) fails unless allow_rewrite (then ALGORITHM=COPY).

SQLite: plain CREATE/DROP INDEX (SQLite has no concurrent build: the database is locked for writes
while it runs).
"""

from __future__ import annotations

import hashlib

from ansible_collections.dbops.maintenance.plugins.module_utils import sqlcheck
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import (
    DbopsError, Plan, Step, did_you_mean,
)

NOTHING = 'Nothing was changed.'
COMPARED = ('unique', 'method', 'keys', 'where', 'details')


def check_options(p):
    """The SQL-valued options (expressions, where) are proven before anything connects."""
    engine = p['engine']
    if p['state'] == 'present' and not (p.get('columns') or p.get('expressions')):
        raise sqlcheck.SqlRefused('state=present needs the index keys: columns and/or expressions. %s'
                                  % sqlcheck.NOTHING)
    for i, col in enumerate(p.get('columns') or ()):
        if not col:
            raise sqlcheck.SqlRefused('columns[%d] is empty; a column name is needed. %s' % (i, sqlcheck.NOTHING))
    for i, expr in enumerate(p.get('expressions') or ()):
        sqlcheck.expression(expr, engine, 'expressions[%d]' % i)
    if p.get('where') is not None:
        sqlcheck.expression(p['where'], engine, 'where')
    if engine == 'mysql':
        if p.get('where') is not None:
            raise sqlcheck.SqlRefused('where (a partial index) is PostgreSQL and SQLite only: MySQL/MariaDB have no '
                                      'partial indexes. %s' % sqlcheck.NOTHING)
        if p.get('expressions'):
            raise sqlcheck.SqlRefused('expressions are PostgreSQL and SQLite only in index_ensure (MariaDB has no '
                                      'functional index; on MySQL 8 use a generated column). %s' % sqlcheck.NOTHING)
    if engine == 'sqlite' and p.get('method'):
        raise sqlcheck.SqlRefused('method is PostgreSQL and MySQL/MariaDB only: SQLite has one kind of index. %s'
                                  % sqlcheck.NOTHING)
    if engine != 'postgresql' and p.get('schema'):
        raise sqlcheck.SqlRefused('schema is PostgreSQL only; on MySQL the schema is the database option. %s'
                                  % sqlcheck.NOTHING)


def describe(d):
    if not d:
        return '(absent)'
    text = '%sINDEX ON %s' % ('UNIQUE ' if d.get('unique') else '', d.get('table'))
    if d.get('method'):
        text += ' USING %s' % d['method']
    text += ' (%s)' % ', '.join(d.get('keys') or ())
    if d.get('where'):
        text += ' WHERE %s' % d['where']
    if d.get('valid') is False:
        text += ' [INVALID]'
    return text


def plan(db, spec):
    """The Plan (engines/base.py) of index_ensure; plan.repaired: an INVALID index is dropped and rebuilt."""
    if db.engine == 'postgresql':
        d = _pg_plan(db, spec)
    elif db.engine == 'mysql':
        d = _my_plan(db, spec)
    else:
        d = _lite_plan(db, spec)
    the_plan = Plan(d['target'], before=d.get('before'), after=d.get('after'), steps=d.get('steps'),
                    differences=d.get('differences'), refused=bool(d.get('refused')))
    the_plan.repaired = bool(d.get('repaired'))
    return the_plan


def apply(db, the_plan, spec):
    if db.engine == 'postgresql':
        return _pg_apply(db, the_plan)
    db.apply(the_plan.steps, allow=dict(allow_rewrite=spec.get('allow_rewrite')))
    return None


def read(db, spec):
    """The index's definition as the server has it now (None when absent)."""
    if db.engine == 'postgresql':
        schema = spec.get('schema') or db.current_schema()
        row = _pg_find(db, schema, spec['name'])
        return _pg_definition(db, row[0]) if row and row[1] in ('i', 'I') else None
    if db.engine == 'mysql':
        return _my_definition(db, spec['table'], spec['name'])
    return _lite_definition(db, spec['name'])


def _differences(current, desired):
    return [k for k in COMPARED if current.get(k) != desired.get(k)]


# --- PostgreSQL ------------------------------------------------------------------------------

_PG_DEFINITION = (
    "SELECT c.relname, t.relname, i.indisunique, am.amname, i.indisvalid, i.indnkeyatts, i.indnatts, "
    "pg_get_expr(i.indpred, i.indrelid, true), "
    "array(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnatts) k), "
    "array(SELECT CASE WHEN o.opcdefault THEN '' ELSE o.opcname END FROM unnest(i.indclass::oid[]) WITH ORDINALITY "
    "AS u(oid, n) JOIN pg_opclass o ON o.oid = u.oid ORDER BY u.n), "
    "array(SELECT COALESCE(co.collname, '') FROM unnest(i.indcollation::oid[]) WITH ORDINALITY AS u(oid, n) "
    "LEFT JOIN pg_collation co ON co.oid = u.oid AND u.oid <> 0 ORDER BY u.n), "
    "i.indoption::int2[]::text, c.reloptions::text "
    "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
    "JOIN pg_am am ON am.oid = c.relam WHERE i.indexrelid = %s")


def _pg_definition(db, index_oid, table_label=None):
    r = db.fetchone(_PG_DEFINITION, [index_oid])
    if r is None:
        return None
    nkey = r[5]
    keys, include = list(r[8][:nkey]), list(r[8][nkey:])
    # Operator classes, collations and ordering (DESC, NULLS FIRST) compared as the catalog has them:
    # the module does not write them, so any of them present on an index makes it another definition.
    details = dict(opclasses=list(r[9]), collations=list(r[10]), options=r[11], include=include,
                   storage=r[12])
    return dict(name=r[0], table=table_label or r[1], unique=r[2], method=r[3], valid=r[4], keys=keys,
                where=r[7], details=details)


def _pg_find(db, schema, name):
    """(oid, relkind, table oid, table name, valid, constraint name or None) of the relation `name` in `schema`."""
    return db.fetchone(
        "SELECT c.oid, c.relkind, i.indrelid, t.relname, i.indisvalid, "
        "(SELECT con.conname FROM pg_constraint con WHERE con.conindid = c.oid AND con.contype IN ('p', 'u', 'x') "
        "LIMIT 1) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid "
        "WHERE n.nspname = %s AND c.relname = %s", [schema, name])


def _pg_temp_name(name):
    """The name a replacement is built under before the swap (63 bytes at most, stable per name)."""
    return 'dbops_new_%s' % hashlib.sha256(name.encode('utf-8')).hexdigest()[:20]


def _pg_create(db, sql, spec, schema, name, table, concurrently=True):
    """CREATE [UNIQUE] INDEX [CONCURRENTLY] name ON schema.table [USING method] (keys) [WHERE pred]."""
    head = sql.SQL('CREATE UNIQUE INDEX ' if spec.get('unique') else 'CREATE INDEX ')
    if concurrently:
        head = head + sql.SQL('CONCURRENTLY ')
    stmt = head + sql.SQL('{} ON {}').format(sql.Identifier(name), db.qualified(schema, table))
    if spec.get('method'):
        stmt = stmt + sql.SQL(' USING {}').format(sql.Identifier(spec['method']))
    keys = [sql.Identifier(c) for c in spec.get('columns') or ()]
    keys += [sql.SQL('(') + sql.SQL(e) + sql.SQL(')') for e in spec.get('expressions') or ()]
    stmt = stmt + sql.SQL(' (') + sql.SQL(', ').join(keys) + sql.SQL(')')
    if spec.get('where') is not None:
        stmt = stmt + sql.SQL(' WHERE ') + sql.SQL(spec['where'])
    return stmt


def _pg_drop(db, sql, schema, name, concurrently=True):
    return sql.SQL('DROP INDEX CONCURRENTLY IF EXISTS {}' if concurrently else 'DROP INDEX IF EXISTS {}').format(
        db.qualified(schema, name))


def _pg_probe(db, sql, psycopg, spec, schema, table, target):
    """The requested definition as the server reads it: built on an empty temporary copy of the table's
    columns, in a transaction that is always rolled back (nothing persists, even in check mode)."""
    probe = sql.Identifier('pg_temp', 'dbops_index_probe')
    try:
        with db.conn.transaction(force_rollback=True):
            db.conn.execute(sql.SQL('CREATE TEMPORARY TABLE {} (LIKE {})').format(probe, db.qualified(schema, table)))
            # prepare=True: the extended protocol runs exactly one statement, whatever the options hold.
            stmt = _pg_create(db, sql, spec, 'pg_temp', 'dbops_index_probe_idx', 'dbops_index_probe',
                              concurrently=False)
            db.conn.execute(stmt, prepare=True)
            oid = db.fetchone("SELECT 'pg_temp.dbops_index_probe_idx'::regclass::oid")[0]
            return _pg_definition(db, oid, table_label=target)
    except psycopg.Error as e:
        raise DbopsError('PostgreSQL does not accept this index definition on %s: %s. %s'
                         % (target, (str(e).strip().splitlines() or [''])[0], NOTHING))


def _pg_plan(db, spec):
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    import psycopg  # pylint: disable=import-outside-toplevel
    schema = spec.get('schema') or db.current_schema()
    table, name = spec['table'], spec['name']
    target = db.display(schema, table)
    index_label = db.display(schema, name)
    concurrently = spec.get('concurrently', True)
    table_oid = db.find_table(schema, table)
    if table_oid is None:
        kind = db.relation_kind(schema, table)
        if kind:
            db.fail('%s is a %s, not a table; index_ensure indexes tables only. %s' % (target, kind, NOTHING))
        if not db.schema_exists(schema):
            db.fail('Schema %s does not exist.%s %s' % (schema, did_you_mean(schema, db.schema_names()), NOTHING))
        db.fail('Table %s does not exist in database %s.%s %s' % (
            target, db.params['database'], did_you_mean(table, db.table_names(schema)), NOTHING))
    partitioned = db.fetchone('SELECT relkind = %s FROM pg_class WHERE oid = %s', ['p', table_oid])[0]
    if partitioned and concurrently:
        db.fail('%s is a partitioned table: PostgreSQL cannot build or drop its indexes CONCURRENTLY. Build the '
                'index on each partition with index_ensure, or set concurrently: false to do it with a lock that '
                'blocks writes for the whole build. %s' % (target, NOTHING))
    found = _pg_find(db, schema, name)
    res = dict(target=index_label, table=target, repaired=False)
    current = None
    if found is not None:
        oid, relkind, on_table, on_table_name, valid, constraint = found
        if relkind not in ('i', 'I'):
            kind = db.relation_kind(schema, name) or 'relation'
            db.fail('%s is a %s, not an index; choose another index name. %s' % (index_label, kind, NOTHING))
        if on_table != table_oid:
            db.fail('The index %s exists on another table (%s), not on %s; index names are per schema. Choose another '
                    'name. %s' % (index_label, db.display(schema, on_table_name), target, NOTHING))
        if constraint is not None:
            db.fail('The index %s belongs to the constraint %s; index_ensure does not change constraint indexes '
                    '(use constraint_ensure, or ALTER TABLE ... DROP CONSTRAINT). %s'
                    % (index_label, sql.Identifier(constraint).as_string(db.conn), NOTHING))
        current = _pg_definition(db, oid, table_label=target)
        current['valid'] = bool(valid)
    res['before'] = current
    tmp = _pg_temp_name(name)
    leftover = _pg_find(db, schema, tmp)
    leftover_steps = []
    if leftover is not None and leftover[1] == 'i' and leftover[2] == table_oid:
        leftover_steps = [Step(db.render(_pg_drop(db, sql, schema, tmp, concurrently)),
                               'drop the leftover of an interrupted replacement', target=tmp)]

    if spec['state'] == 'absent':
        if current is None:
            return dict(res, steps=leftover_steps, after=None)
        return dict(res, after=None, steps=leftover_steps + [
            Step(db.render(_pg_drop(db, sql, schema, name, concurrently)), 'drop the index', target=name)])

    for col in spec.get('columns') or ():
        cols = [c['name'] for c in db.columns(table_oid)]
        if col not in cols:
            db.fail('Column %s does not exist in table %s.%s %s' % (
                sql.Identifier(col).as_string(db.conn), target, did_you_mean(col, cols), NOTHING))
    desired = _pg_probe(db, sql, psycopg, spec, schema, table, target)
    desired['name'] = name
    desired['valid'] = True
    create = Step(db.render(_pg_create(db, sql, spec, schema, name, table, concurrently)), 'build the index',
                  target=name)
    if current is None:
        return dict(res, after=desired, steps=leftover_steps + [create])
    differences = _differences(current, desired)
    if not current['valid']:
        # An INVALID index is not used by any query but is still updated by every write: drop it, build again.
        return dict(res, after=desired, repaired=True, differences=differences + ['valid'],
                    steps=leftover_steps + [
                        Step(db.render(_pg_drop(db, sql, schema, name, concurrently)),
                             'drop the INVALID index left by an interrupted build', target=name), create])
    if not differences:
        return dict(res, steps=leftover_steps, after=current)
    if not spec.get('replace'):
        return dict(res, steps=[], after=desired, differences=differences, refused=True)
    build = Step(db.render(_pg_create(db, sql, spec, schema, tmp, table, concurrently)),
                 'build the new definition under a temporary name', target=tmp)
    rename = Step(db.render(sql.SQL('ALTER INDEX {} RENAME TO {}').format(
        db.qualified(schema, tmp), sql.Identifier(name))), 'give the new index the name', target=None)
    return dict(res, after=desired, differences=differences, steps=leftover_steps + [
        build, Step(db.render(_pg_drop(db, sql, schema, name, concurrently)), 'drop the old definition', target=name),
        rename])


def _pg_invalid(db, schema, name):
    row = _pg_find(db, schema, name)
    return row is not None and row[1] == 'i' and row[4] is False


def _pg_apply(db, the_plan):
    """Run the plan. A CREATE INDEX CONCURRENTLY that fails (lock timeout while it waits for older
    transactions, a duplicate key, statement_timeout) leaves an INVALID index behind: before each
    retry, and before reporting any other failure, that index is dropped CONCURRENTLY."""
    schema = db.params.get('schema') or db.current_schema()
    for step in the_plan.steps:
        if db.check_mode:
            db.queries.append(step.sql)
            continue
        is_create = step.sql.startswith('CREATE ')
        if not is_create:
            db.with_lock_retries(lambda s=step: db.execute(s.sql), step.sql)
            db.queries.append(step.sql)
            continue
        drop_sql = _pg_drop_text(db, schema, step.target)

        def build(s=step, drop=drop_sql):
            if _pg_invalid(db, schema, s.target):
                db.execute(drop)
                db.queries.append(drop)
            db.execute(s.sql)
        try:
            db.with_lock_retries(build, step.sql)
        except DbopsError as e:
            cleaned = _pg_cleanup(db, schema, step.target, drop_sql)
            raise DbopsError('%s%s' % (e, cleaned), **e.details)
        db.queries.append(step.sql)


def _pg_drop_text(db, schema, name):
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    return db.render(_pg_drop(db, sql, schema, name, db.params.get('concurrently', True)))


def _pg_cleanup(db, schema, name, drop_sql):
    """Drop the INVALID index a failed build left; a sentence for the error message."""
    try:
        if not _pg_invalid(db, schema, name):
            return ''
        db.with_lock_retries(lambda: db.execute(drop_sql), drop_sql)
        db.queries.append(drop_sql)
        return ' The INVALID index the failed build left was dropped (%s).' % drop_sql
    except Exception as e:  # pylint: disable=broad-except
        return (' The failed build left an INVALID index that could not be dropped (%s); the next run of '
                'index_ensure drops and rebuilds it.' % db.redact(e))


# --- MySQL / MariaDB ----------------------------------------------------------------------------

def _my_definition(db, table, name):
    from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import quote_ident  # pylint: disable=import-outside-toplevel
    rows = db.fetchall(
        'SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, INDEX_TYPE, COLLATION FROM information_schema.STATISTICS '
        'WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s AND INDEX_NAME = %s ORDER BY SEQ_IN_INDEX', [table, name])
    if not rows:
        return None
    keys = ['%s%s' % (r[2], '(%s)' % r[3] if r[3] is not None else '') for r in rows]
    details = dict(order=['DESC' if r[5] == 'D' else 'ASC' for r in rows])
    return dict(name=rows[0][0], table=quote_ident(table), unique=not int(rows[0][1]), method=rows[0][4], keys=keys,
                where=None, details=details, valid=True)


def _my_plan(db, spec):
    from ansible_collections.dbops.maintenance.plugins.module_utils.engines.mysql.connection import quote_ident  # pylint: disable=import-outside-toplevel
    table, name = spec['table'], spec['name']
    db.require_one_statement_protocol()
    db.require_table(table)
    qt, qn = quote_ident(table), quote_ident(name)
    res = dict(target='%s.%s' % (qt, qn), table=qt, repaired=False)
    if name.upper() == 'PRIMARY':
        db.fail('PRIMARY is the primary key of %s, not an index index_ensure manages (use constraint_ensure). %s'
                % (qt, NOTHING))
    current = _my_definition(db, table, name)
    res['before'] = current
    if current is not None and current['name'] != name:
        db.fail('The index is named %s on %s, not %s (index names are case-insensitive in MySQL/MariaDB): give its '
                'exact name. %s' % (quote_ident(current['name']), qt, qn, NOTHING))
    drop = 'ALTER TABLE %s DROP INDEX %s' % (qt, qn)
    if spec['state'] == 'absent':
        if current is None:
            return dict(res, steps=[], after=None)
        return dict(res, after=None, steps=[_my_steps(drop, 'drop the index')])
    cols = [r[0] for r in db.column_rows(table)]
    for col in spec['columns'] or ():
        if col not in cols:
            db.fail('Column %s does not exist in table %s.%s %s' % (quote_ident(col), qt, did_you_mean(col, cols),
                                                                    NOTHING))
    method = spec['method'].upper() if spec.get('method') else None
    if method is not None and method not in ('BTREE', 'HASH'):
        db.fail('method must be BTREE or HASH on MySQL/MariaDB (it is %r). %s' % (spec['method'], NOTHING))
    add = 'ADD %sINDEX %s (%s)%s' % ('UNIQUE ' if spec.get('unique') else '', qn,
                                     ', '.join(quote_ident(c) for c in spec['columns']),
                                     ' USING %s' % method if method else '')
    desired = dict(name=name, table=qt, unique=bool(spec.get('unique')),
                   method=method or (current['method'] if current else 'BTREE'),
                   keys=list(spec['columns']), where=None, details=dict(order=['ASC'] * len(spec['columns'])),
                   valid=True)
    if current is None:
        return dict(res, after=desired, steps=[_my_steps('ALTER TABLE %s %s' % (qt, add), 'build the index')])
    differences = _differences(current, desired)
    if not differences:
        return dict(res, steps=[], after=current)
    if not spec.get('replace'):
        return dict(res, steps=[], after=desired, differences=differences, refused=True)
    # One ALTER: the old definition is dropped and the new one built in the same statement (atomic).
    return dict(res, after=desired, differences=differences,
                steps=[_my_steps('%s, %s' % (drop, add), 'replace the index definition')])


def _my_steps(base, why):
    """INPLACE without locking writes; a table copy (ALGORITHM=COPY, writes blocked) only with allow_rewrite."""
    copy = Step(base + ', ALGORITHM=COPY', why + ' (copying the table)', requires='allow_rewrite')
    return Step(base + ', ALGORITHM=INPLACE, LOCK=NONE', why + ' (in place, writes allowed)', alternative=copy)


# --- SQLite -----------------------------------------------------------------------------------

def _lite_normal(text):
    """(keys, where) of a CREATE INDEX statement, normalised by sqlglot (quoting and parentheses do not matter)."""
    import sqlglot  # pylint: disable=import-outside-toplevel
    from sqlglot import exp  # pylint: disable=import-outside-toplevel
    tree = sqlglot.parse_one(text, read='sqlite')

    def plain(node):
        if isinstance(node, exp.Identifier):
            return exp.to_identifier(node.name)
        if isinstance(node, exp.Paren):
            return node.this
        return node
    tree = tree.transform(plain)
    index = tree.this
    params = index.args.get('params')
    cols = params.args.get('columns') if params is not None else []
    where = params.args.get('where') if params is not None else None
    keys = [c.sql(dialect='sqlite') for c in cols or []]
    return keys, (where.this.sql(dialect='sqlite') if isinstance(where, exp.Where) else
                  (where.sql(dialect='sqlite') if where is not None else None))


def _lite_definition(db, name):
    from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.connection import quote_ident  # pylint: disable=import-outside-toplevel
    rows = db.fetchall("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,))
    if not rows:
        return None
    table, text = rows[0]
    listed = db.fetchall('SELECT seq, name, "unique" FROM pragma_index_list(?)', (table,))
    unique = any(r[1] == name and r[2] for r in listed)
    if text is None:
        return dict(name=name, table=quote_ident(table), unique=unique, method=None, keys=[], where=None,
                    details=dict(automatic=True), valid=True, table_name=table)
    keys, where = _lite_normal(text)
    return dict(name=name, table=quote_ident(table), unique=unique, method=None, keys=keys, where=where,
                details=None, valid=True, table_name=table)


def _lite_plan(db, spec):
    from ansible_collections.dbops.maintenance.plugins.module_utils.engines.sqlite.connection import quote_ident  # pylint: disable=import-outside-toplevel
    table, name = spec['table'], spec['name']
    qt, qn = quote_ident(table), quote_ident(name)
    if table not in db.table_names():
        kind = db.fetchall("SELECT type FROM sqlite_master WHERE name = ? AND type <> 'table'", (table,))
        if kind:
            db.fail('%s is a %s, not a table; index_ensure indexes tables only. %s' % (qt, kind[0][0], NOTHING))
        db.fail('Table %s does not exist in %s.%s %s' % (qt, db.path, did_you_mean(table, db.table_names()), NOTHING))
    res = dict(target=qn, table=qt, repaired=False)
    other = db.fetchall("SELECT type, tbl_name FROM sqlite_master WHERE name = ? AND type <> 'index'", (name,))
    if other:
        db.fail('%s is a %s, not an index; choose another index name. %s' % (qn, other[0][0], NOTHING))
    current = _lite_definition(db, name)
    if current is not None:
        if current.pop('table_name') != table:
            db.fail('The index %s exists on another table (%s), not on %s; index names are per database. Choose '
                    'another name. %s' % (qn, current['table'], qt, NOTHING))
        if (current.get('details') or {}).get('automatic'):
            db.fail('%s is the automatic index of a UNIQUE or PRIMARY KEY constraint of %s; index_ensure does not '
                    'change it. %s' % (qn, qt, NOTHING))
    res['before'] = current
    drop = 'DROP INDEX IF EXISTS %s' % qn
    if spec['state'] == 'absent':
        if current is None:
            return dict(res, steps=[], after=None)
        return dict(res, after=None, steps=[Step(drop, 'drop the index')])
    cols = list(db.columns(table))
    for col in spec['columns'] or ():
        if col not in cols:
            db.fail('Column %s does not exist in table %s.%s %s' % (quote_ident(col), qt, did_you_mean(col, cols),
                                                                    NOTHING))
    keys = [quote_ident(c) for c in spec['columns'] or ()] + ['(%s)' % e for e in spec.get('expressions') or ()]
    create = 'CREATE %sINDEX %s ON %s (%s)' % ('UNIQUE ' if spec.get('unique') else '', qn, qt, ', '.join(keys))
    if spec.get('where') is not None:
        create += ' WHERE %s' % spec['where']
    want_keys, want_where = _lite_normal(create)
    desired = dict(name=name, table=qt, unique=bool(spec.get('unique')), method=None, keys=want_keys,
                   where=want_where, details=None, valid=True)
    if current is None:
        return dict(res, after=desired, steps=[Step(create, 'build the index')])
    differences = _differences(current, desired)
    if not differences:
        return dict(res, steps=[], after=current)
    if not spec.get('replace'):
        return dict(res, steps=[], after=desired, differences=differences, refused=True)
    return dict(res, after=desired, differences=differences,
                steps=[Step(drop, 'drop the old definition'), Step(create, 'build the new definition')])
