# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of db_verify. Each check returns Check results; none stops the others.

Engine-specific SQL lives in the adapters' ``verification (db_verify)``
sections (verify_*); this module only compares what they read with what the
operator expects, and words the result.
"""

from __future__ import annotations

import datetime
import math
import os

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, did_you_mean


def check(name, kind, ok, expected, actual, message=''):
    return dict(name=name, kind=kind, ok=bool(ok), expected=expected, actual=actual, message=message)


def _guard(name, kind, expected, fn):
    """Run one check; an error while reading becomes a failed check that says what went wrong."""
    try:
        return fn()
    except DbopsError as e:
        return [check(name, kind, False, expected, None, str(e))]


class Verifier:
    def __init__(self, db, params):
        self.db = db
        self.params = params
        self.engine = db.engine
        self._tables = None

    # --- names -----------------------------------------------------------------------------
    def default_schema(self):
        return self.params.get('schema') or self.db.current_schema()

    def split(self, name, schema=None):
        """(schema, table) for PostgreSQL ('s.t' or 't'); (None, table) otherwise."""
        if self.engine != 'postgresql':
            return None, name
        if schema:
            return schema, name
        if '.' in name:
            s, t = name.split('.', 1)
            return s, t
        return self.default_schema(), name

    def display(self, schema, table):
        return '%s.%s' % (schema, table) if schema else table

    def tables(self):
        """[(schema, table)] of every user table (PostgreSQL: all non-system schemas)."""
        if self._tables is None:
            self._tables = self.db.catalog_tables()
        return self._tables

    def empty_file_note(self):
        if self.engine == 'sqlite':
            try:
                if os.path.getsize(self.db.path) == 0:
                    return ' (the file %s is 0 bytes: nothing was ever migrated into it)' % self.db.path
            except OSError:
                pass
        return ''

    # --- checks ------------------------------------------------------------------------------
    def tables_min(self, minimum):
        n = len(self.tables())
        if n == 0:
            msg = 'empty database: no tables%s' % self.empty_file_note()
        elif n < minimum:
            msg = 'only %d table(s), at least %d expected: %s' % (n, minimum, ', '.join(
                self.display(s, t) for s, t in self.tables()[:20]))
        else:
            msg = '%d table(s)' % n
        return [check('tables_min', 'tables_min', n >= minimum, minimum, n, msg)]

    def table_exists(self, name):
        schema, table = self.split(name)
        present = list(self.tables())
        ok = (schema, table) in present
        if ok:
            msg = 'exists'
        elif not present:
            msg = 'missing: empty database: no tables%s' % self.empty_file_note()
        else:
            msg = 'missing.%s' % did_you_mean(self.display(schema, table), [self.display(s, t) for s, t in present])
        return check('table %s' % self.display(schema, table), 'tables', ok, 'exists',
                     'exists' if ok else 'missing', msg.strip())

    def column(self, spec):
        schema, table = self.split(spec['table'], spec.get('schema'))
        name = 'column %s.%s' % (self.display(schema, table), spec['column'])
        expected = dict((k, spec[k]) for k in ('type', 'nullable') if spec.get(k) is not None)
        expected = expected or 'exists'
        if (schema, table) not in self.tables():
            return check(name, 'columns', False, expected, None, 'table %s does not exist' % self.display(schema, table))
        cols = self.db.catalog_columns(schema, table)
        col = cols.get(spec['column'])
        if col is None:
            return check(name, 'columns', False, expected, None, 'column missing.%s' % did_you_mean(
                spec['column'], list(cols)))
        actual = dict(type=col['type'], nullable=col['nullable'])
        problems = []
        if spec.get('type') is not None and not self.same_type(spec['type'], col['type']):
            problems.append('type is %s, expected %s (%s as the server spells it)' % (
                col['type'], spec['type'], self.db.catalog_normalise_type(spec['type'])))
        if spec.get('nullable') is not None and spec['nullable'] != col['nullable']:
            problems.append('is %s, expected %s' % (
                'nullable' if col['nullable'] else 'NOT NULL', 'nullable' if spec['nullable'] else 'NOT NULL'))
        return check(name, 'columns', not problems, expected, actual, '; '.join(problems) or 'as expected')

    def same_type(self, expected, actual):
        """Compare after the server's own normalisation of the expected type (see the adapters'
        catalog_normalise_type); SQLite keeps declared types as written, so both sides are normalised."""
        if expected.strip().lower() == actual.strip().lower():
            return True
        want = self.db.catalog_normalise_type(expected)
        have = self.db.catalog_normalise_type(actual) if self.engine == 'sqlite' else actual
        return want.lower() == have.lower()

    def enum(self, spec):
        values = spec['values']
        if self.engine == 'postgresql':
            schema = spec.get('schema') or self.default_schema()
            name = 'enum %s.%s' % (schema, spec['name'])
            current, other = self.db.find_enum(schema, spec['name'])
            if other:
                return check(name, 'enum_values', False, values, None, '%s is a %s, not an enum' % (spec['name'], other))
            if current is None:
                return check(name, 'enum_values', False, values, None, 'enum type missing.%s' % did_you_mean(
                    spec['name'], [n for _s, n in self.db.enum_names()]))
        else:
            name = 'enum %s.%s' % (spec['table'], spec['column'])
            if (None, spec['table']) not in self.tables():
                return check(name, 'enum_values', False, values, None, 'table %s does not exist' % spec['table'])
            cols = self.db.catalog_columns(None, spec['table'])
            if spec['column'] not in cols:
                return check(name, 'enum_values', False, values, None, 'column missing.%s' % did_you_mean(
                    spec['column'], list(cols)))
            if not cols[spec['column']]['type'].lower().startswith('enum('):
                return check(name, 'enum_values', False, values, cols[spec['column']]['type'], 'not an ENUM column')
            current = self.db.enum_state(table=spec['table'], column=spec['column'])['values']
        missing = [v for v in values if v not in current]
        return check(name, 'enum_values', not missing, values, current,
                     ('missing value(s): %s' % ', '.join(missing)) if missing else 'all present')

    def query(self, spec, index):
        name = 'query %s' % (spec.get('name') or '#%d' % (index + 1))
        try:
            row = self.db.run_readonly_query(spec['sql'])
        except DbopsError as e:
            return check(name, 'queries', False, 'a truthy first value', None, str(e))
        if row is None:
            return check(name, 'queries', False, 'a truthy first value', None, 'the query returned no row')
        value = row[0] if row else None
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value).decode('utf-8', errors='replace')
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            value = str(value)
        return check(name, 'queries', bool(value), 'a truthy first value', value,
                     'ok' if value else 'first value is %r' % (value,))

    # --- row counts -------------------------------------------------------------------------------
    def count_key(self, schema, table):
        return '%s.%s' % (schema, table) if self.engine == 'postgresql' else table

    def counts(self, only=None):
        wanted = None
        if only:
            wanted = set(self.split(t) for t in only)
        out = {}
        for schema, table in self.tables():
            if wanted is not None and (schema, table) not in wanted:
                continue
            out[self.count_key(schema, table)] = self.db.catalog_row_count(schema, table)
        return out

    def capture(self, only=None):
        return dict(engine=self.engine, database=self.params['database'],
                    captured_at=datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
                    tables=self.counts(only))

    def compare(self, baseline, tolerance, only=None):
        tables = baseline.get('tables') if isinstance(baseline, dict) else None
        if not isinstance(tables, dict):
            raise DbopsError('baseline is not a baseline of db_verify: it has no "tables" mapping. Pass the '
                             '"baseline" value returned by an earlier run with capture: true.')
        out = []
        if baseline.get('engine') not in (None, self.engine) or baseline.get('database') not in (
                None, self.params['database']):
            out.append(check('row_counts baseline', 'row_counts', False,
                             '%s/%s' % (self.engine, self.params['database']),
                             '%s/%s' % (baseline.get('engine'), baseline.get('database')),
                             'the baseline was captured on another database'))
            return out
        now = self.counts()
        for key in sorted(tables):
            if only and key not in only and key.split('.')[-1] not in only:
                continue
            before = int(tables[key])
            allowed = int(math.ceil(before * (1 - tolerance / 100.0) - 1e-9))
            name = 'row_count %s' % key
            if key not in now:
                out.append(check(name, 'row_counts', False, '>= %d' % allowed, None,
                                 'table is gone (it had %d row(s) at %s)' % (before, baseline.get('captured_at'))))
                continue
            after = now[key]
            lost = before - after
            if after >= allowed:
                msg = 'ok (%d before)' % before
            else:
                msg = 'lost %d row(s) of %d (%.1f%%), more than the tolerance of %s%%' % (
                    lost, before, 100.0 * lost / before if before else 100.0, tolerance)
            out.append(check(name, 'row_counts', after >= allowed, '>= %d' % allowed, after, msg))
        return out


def run_checks(db, params, migrations_status=None):
    """Every check of the module's options, in a fixed order. Returns (checks, baseline or None)."""
    v = Verifier(db, params)
    checks = []
    if params.get('tables_min') is not None:
        checks.extend(_guard('tables_min', 'tables_min', params['tables_min'],
                             lambda: v.tables_min(params['tables_min'])))
    for name in params.get('tables') or []:
        checks.extend(_guard('table %s' % name, 'tables', 'exists', lambda name=name: [v.table_exists(name)]))
    for spec in params.get('columns') or []:
        checks.extend(_guard('column %s.%s' % (spec['table'], spec['column']), 'columns', None,
                             lambda spec=spec: [v.column(spec)]))
    for spec in params.get('enum_values') or []:
        label = spec.get('name') or '%s.%s' % (spec.get('table'), spec.get('column'))
        checks.extend(_guard('enum %s' % label, 'enum_values', spec['values'], lambda spec=spec: [v.enum(spec)]))
    if params.get('migrations'):
        spec = params['migrations']
        checks.extend(_guard('migrations %s' % spec['tool'], 'migrations', 'no pending, failed or unknown',
                             lambda: migrations_status(db, spec)))
    for i, spec in enumerate(params.get('queries') or []):
        checks.append(v.query(spec, i))
    if params.get('schema_snapshot'):
        from ansible_collections.dbops.maintenance.plugins.module_utils.schema.checks import verify_schema
        spec = params['schema_snapshot']
        checks.extend(_guard('schema %s' % spec['snapshot'], 'schema', 'the snapshot, with the declared change',
                             lambda: [verify_schema(db, spec, check)]))
    baseline = None
    if params.get('baseline') is not None:
        checks.extend(_guard('row_counts', 'row_counts', 'no table lost rows',
                             lambda: v.compare(params['baseline'], params['tolerance'], params.get('row_count_tables'))))
    if params.get('capture'):
        baseline = v.capture(params.get('row_count_tables'))
    return checks, baseline


def summary(checks):
    failed = [c for c in checks if not c['ok']]
    head = 'db_verify: %d of %d check(s) failed' % (len(failed), len(checks)) if failed else \
        'db_verify: all %d check(s) passed' % len(checks)
    lines = [head]
    for c in failed:
        lines.append('FAIL %s: %s (expected %s, actual %s)' % (c['name'], c['message'], c['expected'], c['actual']))
    return '\n'.join(lines)
