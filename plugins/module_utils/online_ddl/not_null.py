# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""column_ensure nullable: false on an existing PostgreSQL 12+ column, without the long ACCESS EXCLUSIVE scan.

A plain ALTER COLUMN ... SET NOT NULL scans the whole table under ACCESS EXCLUSIVE (every read and
write waits). PostgreSQL 12+ skips that scan when a valid CHECK (col IS NOT NULL) proves it, so:

1. ALTER TABLE t ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID   - metadata only (brief lock)
2. ALTER TABLE t VALIDATE CONSTRAINT c                                 - the scan, under SHARE UPDATE
                                                                         EXCLUSIVE: writes go on
3. ALTER TABLE t ALTER COLUMN col SET NOT NULL                         - no scan (brief lock)
4. ALTER TABLE t DROP CONSTRAINT c                                     - brief lock

Each step is its own statement, with lock_timeout and retries (Adapter.apply). The constraint has a
name derived from the table and column, so an interrupted sequence resumes: a leftover NOT VALID
check skips step 1, a leftover valid one steps 1 and 2, and a leftover check on a column that is
already NOT NULL is dropped (leftover_steps).
"""

from __future__ import annotations

import hashlib

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import Step

MIN_SERVER_VERSION = 120000


def check_name(schema, table, column):
    """The sequence's CHECK constraint name (at most 63 bytes, the same for every run on this column)."""
    digest = hashlib.sha256(('%s\0%s\0%s' % (schema, table, column)).encode('utf-8')).hexdigest()[:20]
    return 'dbops_not_null_%s' % digest


def _leftover(db, schema, table, column):
    """None, or whether the sequence's CHECK on the table is validated (it is ours only if it is exactly
    CHECK (col IS NOT NULL))."""
    # Ours: on exactly this column, and the server's own deparse of it is "(<column> IS NOT NULL)"
    # (quote_ident quotes the column as the deparser does).
    row = db.fetchone(
        "SELECT con.convalidated, pg_get_constraintdef(con.oid), "
        "con.conkey = ARRAY[a.attnum] AND pg_get_expr(con.conbin, con.conrelid) = '(' || quote_ident(a.attname) "
        "|| ' IS NOT NULL)' FROM pg_constraint con JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attname = %s "
        "WHERE con.conrelid = %s::regclass AND con.conname = %s AND con.contype = 'c'",
        [column, db.render(db.qualified(schema, table)), check_name(schema, table, column)])
    if row is None:
        return None
    if not row[2]:
        db.fail('A CHECK constraint named %s exists on %s but is not the NOT NULL check of %s (%s); drop or rename it. '
                'Nothing was changed.' % (check_name(schema, table, column), db.display(schema, table), column, row[1]))
    return bool(row[0])


def steps(db, schema, table, column):
    """The NOT NULL sequence's steps, resuming an interrupted run; [] when the server is older than 12
    (the caller then uses a plain SET NOT NULL)."""
    if db.server_version < MIN_SERVER_VERSION:
        return []
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    qtable, qcol = db.qualified(schema, table), sql.Identifier(column)
    name = sql.Identifier(check_name(schema, table, column))
    leftover = _leftover(db, schema, table, column)
    out = []
    if leftover is None:
        out.append(Step(db.render(sql.SQL('ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID').format(
            qtable, name, qcol)), 'add the NOT NULL check without scanning (NOT VALID)'))
    if not leftover:
        out.append(Step(db.render(sql.SQL('ALTER TABLE {} VALIDATE CONSTRAINT {}').format(qtable, name)),
                        'validate the check (scans the table; writes go on)'))
    out.append(Step(db.render(sql.SQL('ALTER TABLE {} ALTER COLUMN {} SET NOT NULL').format(qtable, qcol)),
                    'set NOT NULL (the valid check spares the scan)'))
    out.append(drop_step(db, schema, table, column))
    return out


def drop_step(db, schema, table, column):
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    return Step(db.render(sql.SQL('ALTER TABLE {} DROP CONSTRAINT {}').format(
        db.qualified(schema, table), sql.Identifier(check_name(schema, table, column)))), 'drop the NOT NULL check')


def leftover_steps(db, spec, the_plan):
    """column_ensure: the check of an interrupted sequence on a column that is already NOT NULL is dropped."""
    if db.engine != 'postgresql' or spec.get('state') != 'present' or spec.get('nullable', True):
        return []
    if db.server_version < MIN_SERVER_VERSION or not the_plan.before or the_plan.refused:
        return []
    if the_plan.before.get('nullable'):
        return []  # the sequence itself (in the plan) ends with the drop
    schema = spec.get('schema') or db.current_schema()
    if _leftover(db, schema, spec['table'], spec['column']) is None:
        return []
    return [drop_step(db, schema, spec['table'], spec['column'])]
