# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift -> the statements that bring the database to the reference, for what can be expressed safely.

Generated: missing schemas, enum types and values (PostgreSQL ADD VALUE at its place; MySQL ENUM/SET values
appended: MODIFY COLUMN with the reference's definition), sequences, tables (with their columns and primary key,
then their indexes and constraints as below), columns, indexes (PostgreSQL CREATE INDEX CONCURRENTLY; MySQL
ALGORITHM=INPLACE, LOCK=NONE), foreign keys and CHECK constraints (PostgreSQL NOT VALID, then VALIDATE: the
long check takes no lock that blocks writes), views; an INVALID index (REINDEX INDEX CONCURRENTLY) and a NOT
VALID constraint (VALIDATE). Objects only in the database get their DROP only with include_drops, flagged
data_loss where rows or values go with them. Everything else (a type change, a changed default, a view body) is
listed in `not_expressed` with the reason: a change of that kind needs a migration, written and reviewed.

Every statement is parsed with migration_lint's parser for the engine: a text that is not exactly one statement
(a hostile or corrupted snapshot's definition) is not returned (not_expressed says so); the others carry the
findings of migration_lint's rules.
"""

from __future__ import annotations

import re

from ansible_collections.dbops.maintenance.plugins.module_utils.schema.compare import SINGULAR


def qi(engine, name):
    if engine == 'mysql':
        return '`%s`' % name.replace('`', '``')
    return '"%s"' % name.replace('"', '""')


def ql(engine, value):
    """A string literal (standard_conforming_strings on PostgreSQL; MySQL: backslash escaped too)."""
    text = str(value).replace("'", "''")
    if engine == 'mysql':
        text = text.replace('\\', '\\\\')
    return "'%s'" % text


class Generator:
    def __init__(self, reference, actual, include_drops, pg_version=None):
        self.ref = reference
        self.act = actual
        self.engine = reference.engine
        self.flavour = actual.flavour
        self.include_drops = include_drops
        self.pg_version = pg_version
        self.out = []          # dict(statement, object, why, data_loss)
        self.not_expressed = []

    # --- names ------------------------------------------------------------------------------
    def name(self, path):
        return '.'.join(qi(self.engine, p) for p in path)

    def table_of(self, snap, kind, path):
        return snap.parents.get((kind, tuple(path)))

    def emit(self, entry, statement, why, data_loss=False):
        self.out.append(dict(statement=statement, object='%s %s' % (entry['kind'], entry['name']), why=why,
                             data_loss=data_loss, drop=False))

    def skip(self, entry, reason):
        self.not_expressed.append(dict(kind=entry['kind'], name=entry['name'], what=entry['what'], reason=reason))

    # --- columns -------------------------------------------------------------------------------
    def column_spec(self, col, attrs):
        e = self.engine
        parts = [qi(e, col), attrs['type']]
        if e == 'postgresql':
            if attrs.get('collation'):
                parts.append('COLLATE %s' % qi(e, attrs['collation']))
            if attrs.get('identity'):
                parts.append('GENERATED %s AS IDENTITY' % attrs['identity'])
            elif attrs.get('generated'):
                parts.append('GENERATED ALWAYS AS (%s) STORED' % attrs['generated'])
            elif attrs.get('default') is not None:
                parts.append('DEFAULT %s' % attrs['default'])
            if not attrs.get('nullable', True):
                parts.append('NOT NULL')
        elif e == 'mysql':
            extra = attrs.get('extra') or ''
            if attrs.get('collation'):
                parts.append('COLLATE %s' % qi(e, attrs['collation']))
            if attrs.get('generated'):
                parts.append('AS (%s) %s' % (attrs['generated'], 'STORED' if 'stored' in extra else 'VIRTUAL'))
            else:
                parts.append('NULL' if attrs.get('nullable', True) else 'NOT NULL')
                d = attrs.get('default')
                if d is not None:
                    if self.flavour == 'mariadb':
                        parts.append('DEFAULT %s' % d)
                    elif 'default_generated' in extra:
                        parts.append('DEFAULT (%s)' % d if not d.upper().startswith('CURRENT_TIMESTAMP') else
                                     'DEFAULT %s' % d)
                    else:
                        parts.append('DEFAULT %s' % ql(e, d))
                if 'auto_increment' in extra:
                    parts.append('AUTO_INCREMENT')
                m = re.search(r'on update (current_timestamp(\(\d*\))?)', extra)
                if m:
                    parts.append('ON UPDATE %s' % m.group(1).upper())
            if attrs.get('comment'):
                parts.append('COMMENT %s' % ql(e, attrs['comment']))
        else:
            if not attrs.get('nullable', True):
                parts.append('NOT NULL')
            if attrs.get('default') is not None:
                parts.append('DEFAULT %s' % attrs['default'])
        return ' '.join(p for p in parts if p)

    # --- per kind ---------------------------------------------------------------------------------
    def missing(self, entry, snap=None):
        snap = snap or self.ref
        kind, path = entry['kind'], tuple(entry['path'])
        attrs = snap.objects[(kind, path)]
        e = self.engine
        parent = snap.parents.get((kind, path))
        table = self.name(parent) if parent else None
        if kind == 'schema' and e == 'postgresql':
            self.emit(entry, 'CREATE SCHEMA %s' % self.name(path), 'the schema is missing')
        elif kind == 'enum' and e == 'postgresql':
            values = ', '.join(ql(e, v) for v in attrs['values'])
            self.emit(entry, 'CREATE TYPE %s AS ENUM (%s)' % (self.name(path), values),
                      'the enum type is missing')
        elif kind == 'sequence':
            self.emit(entry, 'CREATE SEQUENCE %s AS %s INCREMENT BY %d MINVALUE %d MAXVALUE %d START WITH %d%s' % (
                self.name(path), attrs['type'], attrs['increment'], attrs['min'], attrs['max'], attrs['start'],
                ' CYCLE' if attrs.get('cycle') else ''), 'the sequence is missing')
        elif kind == 'table':
            self.create_table(entry, snap, path, attrs)
        elif kind == 'column':
            self.emit(entry, 'ALTER TABLE %s ADD COLUMN %s' % (table, self.column_spec(path[-1], attrs)),
                      'the column is missing')
        elif kind == 'primary_key' and e != 'sqlite':
            cols = ', '.join(qi(e, c) for c in attrs['columns'])
            name = '' if e == 'mysql' else 'CONSTRAINT %s ' % qi(e, attrs['name'])
            self.emit(entry, 'ALTER TABLE %s ADD %sPRIMARY KEY (%s)' % (table, name, cols),
                      'the primary key is missing (it builds its index while it holds the table)')
        elif kind == 'index':
            self.create_index(entry, path, attrs, table)
        elif kind == 'unique' and e == 'postgresql':
            idx = qi(e, path[-1])
            cols = ', '.join(qi(e, c) for c in attrs['columns'])
            self.emit(entry, 'CREATE UNIQUE INDEX CONCURRENTLY %s ON %s (%s)' % (idx, table, cols),
                      'the unique constraint is missing: its index first, built without blocking writes')
            self.emit(entry, 'ALTER TABLE %s ADD CONSTRAINT %s UNIQUE USING INDEX %s' % (table, idx, idx),
                      'then the constraint on that index (a short lock)')
        elif kind in ('foreign_key', 'check') and e == 'postgresql':
            name = qi(e, attrs['name'] if kind == 'foreign_key' else path[-1])
            self.emit(entry, 'ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID' % (table, name, attrs['definition']),
                      'the %s is missing: added NOT VALID (no scan of the rows under the lock)' % SINGULAR[kind])
            self.emit(entry, 'ALTER TABLE %s VALIDATE CONSTRAINT %s' % (table, name),
                      'then validated, which reads the rows without blocking writes')
        elif kind == 'foreign_key' and e == 'mysql':
            self.emit(entry, 'ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (%s) REFERENCES %s (%s) ON DELETE %s '
                      'ON UPDATE %s' % (table, qi(e, attrs['name']), ', '.join(qi(e, c) for c in attrs['columns']),
                                        self.name(attrs['references'].split('.')) if '.' in attrs['references']
                                        and not snap.objects.get(('table', (attrs['references'],)))
                                        else qi(e, attrs['references']),
                                        ', '.join(qi(e, c) for c in attrs['referenced_columns']),
                                        attrs['on_delete'], attrs['on_update']),
                      'the foreign key is missing (MySQL has no NOT VALID: the rows are checked while the '
                      'statement runs)')
        elif kind == 'check' and e == 'mysql':
            self.emit(entry, 'ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s)'
                      % (table, qi(e, path[-1]), attrs['definition']),
                      'the CHECK constraint is missing (checked on every row while the statement runs)')
        elif kind == 'view' and e == 'postgresql' and not attrs.get('materialized'):
            self.emit(entry, 'CREATE VIEW %s AS %s' % (self.name(path), attrs['definition'].rstrip(';')),
                      'the view is missing')
        elif kind == 'view' and e == 'mysql':
            self.emit(entry, 'CREATE VIEW %s AS %s' % (self.name(path), attrs['definition']), 'the view is missing')
        elif kind in ('view', 'trigger') and e == 'sqlite' and attrs.get('definition'):
            self.emit(entry, attrs['definition'], 'the %s is missing' % kind)
        else:
            self.skip(entry, self.why_not(kind, 'missing'))

    def why_not(self, kind, what):
        if kind in ('function', 'trigger') or (kind == 'view' and self.engine != 'sqlite'):
            return ('only a hash of the body is in the snapshot (or the body cannot be rebuilt from it): recreate '
                    'it from its migration')
        if kind == 'foreign_key' and self.engine == 'sqlite':
            return 'SQLite cannot add a foreign key to a table without rebuilding it: write a migration'
        if what == 'missing':
            return 'no safe statement for this kind on %s: write a migration' % self.engine
        return ('a change of %s needs a migration (it may rewrite or lock the table, or lose data): written and '
                'reviewed, not generated' % what)

    def create_index(self, entry, path, attrs, table):
        e = self.engine
        if e == 'postgresql':
            definition = attrs.get('definition') or ''
            m = re.match(r'^CREATE (UNIQUE )?INDEX ', definition)
            if not m:
                return self.skip(entry, 'the reference has no CREATE INDEX definition for it')
            self.emit(entry, 'CREATE %sINDEX CONCURRENTLY %s' % (m.group(1) or '', definition[m.end():]),
                      'the index is missing: built CONCURRENTLY (no write lock while it builds)')
        elif e == 'mysql':
            cols = ', '.join('%s%s%s' % (qi(e, c), '(%d)' % p if p else '', ' DESC' if o == 'DESC' else '')
                             for c, p, o in zip(attrs['columns'], attrs.get('prefixes') or [None] * len(
                                 attrs['columns']), attrs.get('orders') or ['ASC'] * len(attrs['columns'])))
            method = attrs.get('method') or 'BTREE'
            kind = {'FULLTEXT': 'FULLTEXT INDEX', 'SPATIAL': 'SPATIAL INDEX'}.get(
                method, 'UNIQUE INDEX' if attrs.get('unique') else 'INDEX')
            self.emit(entry, 'ALTER TABLE %s ADD %s %s (%s), ALGORITHM=INPLACE, LOCK=NONE' % (
                table, kind, qi(e, path[-1]), cols), 'the index is missing: built in place, writes allowed')
        else:
            if not attrs.get('definition'):
                return self.skip(entry, 'the index belongs to a UNIQUE constraint of the table definition: SQLite '
                                        'adds it only by rebuilding the table')
            self.emit(entry, attrs['definition'], 'the index is missing')
        return None

    def create_table(self, entry, snap, path, attrs):
        e = self.engine
        cols = sorted(((k[1], a) for k, a in snap.objects.items() if k[0] == 'column'
                       and snap.parents.get(k) == path), key=lambda i: i[1].get('position') or 0)
        if not cols:
            return self.skip(entry, 'the reference has no columns for it')
        for (kind, cpath), _a in sorted(snap.objects.items()):
            if kind == 'sequence' and snap.parents.get((kind, cpath)) == path:  # its serial's sequence, first
                self.missing(dict(kind=kind, name=snap.display(cpath), path=list(cpath), what='missing'), snap)
        lines = [self.column_spec(p[-1], a) for p, a in cols]
        pk = snap.objects.get(('primary_key', path))
        if pk:
            lines.append('%sPRIMARY KEY (%s)' % ('CONSTRAINT %s ' % qi(e, pk['name']) if e == 'postgresql' else '',
                                                 ', '.join(qi(e, c) for c in pk['columns'])))
        tail = ''
        if e == 'mysql':
            tail = ' ENGINE=%s%s' % (attrs.get('engine') or 'InnoDB',
                                     ' DEFAULT COLLATE=%s' % attrs['collation'] if attrs.get('collation') else '')
            if attrs.get('comment'):
                tail += ' COMMENT=%s' % ql(e, attrs['comment'])
        self.emit(entry, 'CREATE TABLE %s (%s)%s' % (self.name(path), ', '.join(lines), tail), 'the table is missing')
        if e == 'postgresql' and attrs.get('comment'):
            self.emit(entry, 'COMMENT ON TABLE %s IS %s' % (self.name(path), ql(e, attrs['comment'])),
                      'its comment')
        for (kind, cpath), _a in sorted(snap.objects.items()):
            if kind in ('index', 'unique', 'foreign_key', 'check') and snap.parents.get((kind, cpath)) == path:
                child = dict(kind=kind, name=snap.display(cpath), path=list(cpath), what='missing')
                self.missing(child, snap)
        return None

    def drop(self, entry):
        kind, path = entry['kind'], tuple(entry['path'])
        attrs = self.act.objects[(kind, path)]
        parent = self.act.parents.get((kind, path))
        table = self.name(parent) if parent else None
        e = self.engine
        if kind == 'table':
            self.emit(entry, 'DROP TABLE %s' % self.name(path), 'only in the database: DATA LOSS (its rows)', True)
        elif kind == 'column':
            self.emit(entry, 'ALTER TABLE %s DROP COLUMN %s' % (table, qi(e, path[-1])),
                      'only in the database: DATA LOSS (the column\'s values)', True)
        elif kind == 'index':
            if e == 'postgresql':
                self.emit(entry, 'DROP INDEX CONCURRENTLY %s' % self.name(path[:1] + path[2:]), 'only in the database')
            elif e == 'mysql':
                self.emit(entry, 'ALTER TABLE %s DROP INDEX %s, ALGORITHM=INPLACE, LOCK=NONE' % (table, qi(e, path[-1])),
                          'only in the database')
            elif attrs.get('definition'):
                self.emit(entry, 'DROP INDEX %s' % qi(e, path[-1]), 'only in the database')
            else:
                self.skip(entry, 'the index belongs to a UNIQUE constraint of the table definition')
        elif kind in ('foreign_key', 'check', 'unique', 'exclusion') and e == 'postgresql':
            name = attrs['name'] if kind == 'foreign_key' else path[-1]
            self.emit(entry, 'ALTER TABLE %s DROP CONSTRAINT %s' % (table, qi(e, name)), 'only in the database')
        elif kind == 'foreign_key' and e == 'mysql':
            self.emit(entry, 'ALTER TABLE %s DROP FOREIGN KEY %s' % (table, qi(e, attrs['name'])), 'only in the database')
        elif kind == 'check' and e == 'mysql':
            word = 'CONSTRAINT' if self.flavour == 'mariadb' else 'CHECK'
            self.emit(entry, 'ALTER TABLE %s DROP %s %s' % (table, word, qi(e, path[-1])), 'only in the database')
        elif kind == 'view':
            self.emit(entry, 'DROP %sVIEW %s' % ('MATERIALIZED ' if attrs.get('materialized') else '',
                                                 self.name(path)),
                      'only in the database%s' % (': DATA LOSS (its rows)' if attrs.get('materialized') else ''),
                      bool(attrs.get('materialized')))
        elif kind == 'trigger':
            if e == 'postgresql':
                self.emit(entry, 'DROP TRIGGER %s ON %s' % (qi(e, path[-1]), table), 'only in the database')
            else:
                self.emit(entry, 'DROP TRIGGER %s' % qi(e, path[-1]), 'only in the database')
        elif kind == 'sequence':
            self.emit(entry, 'DROP SEQUENCE %s' % self.name(path), 'only in the database: DATA LOSS (its value)', True)
        elif kind == 'enum':
            self.emit(entry, 'DROP TYPE %s' % self.name(path), 'only in the database')
        else:
            self.skip(entry, 'no DROP generated for a %s: drop it by hand after review' % SINGULAR[kind])

    def differs(self, entry):
        kind, what, path = entry['kind'], entry['what'], tuple(entry['path'])
        e = self.engine
        parent = self.ref.parents.get((kind, path))
        table = self.name(parent) if parent else None
        ref, act = entry['reference'], entry['actual']
        if e == 'postgresql' and what == 'valid' and ref is True and act is False:
            if kind == 'index':
                self.emit(entry, 'REINDEX INDEX CONCURRENTLY %s' % self.name(path[:1] + path[2:]),
                          'the index is INVALID (a failed CONCURRENTLY build): rebuilt without blocking writes')
                return
            if kind in ('foreign_key', 'check'):
                name = self.ref.objects[(kind, path)]['name'] if kind == 'foreign_key' else path[-1]
                self.emit(entry, 'ALTER TABLE %s VALIDATE CONSTRAINT %s' % (table, qi(e, name)),
                          'the constraint is NOT VALID: validated without blocking writes')
                return
        if kind == 'enum' and what == 'values' and e == 'postgresql' and _is_subsequence(act, ref):
            have = list(act)
            for i, v in enumerate(ref):
                if v in have:
                    continue
                after = ref[i - 1] if i > 0 else None
                where = (' AFTER %s' % ql(e, after)) if after is not None else (
                    ' BEFORE %s' % ql(e, have[0]) if have else '')
                self.emit(entry, 'ALTER TYPE %s ADD VALUE %s%s' % (self.name(path), ql(e, v), where),
                          'the enum value is missing')
                have.insert(have.index(after) + 1 if after is not None else 0, v)
            return
        if (kind == 'column' and what == 'type' and e == 'mysql' and _enum_extended(act, ref)):
            attrs = self.ref.objects[(kind, path)]
            self.emit(entry, 'ALTER TABLE %s MODIFY COLUMN %s, ALGORITHM=INSTANT' % (table, self.column_spec(
                path[-1], attrs)), 'values appended to the ENUM/SET (in place, no copy, when only appended)')
            return
        self.skip(entry, self.why_not(kind, what))

    def run(self, drift):
        for entry in drift:
            if entry['what'] == 'missing':
                self.missing(entry)
            elif entry['what'] == 'unexpected':
                if self.include_drops:
                    n = len(self.out)
                    self.drop(entry)
                    for st in self.out[n:]:
                        st['drop'] = True
                else:
                    self.skip(entry, 'only in the database: its DROP is listed only with include_drops: true')
            else:
                self.differs(entry)
        return self.out, self.not_expressed


def _is_subsequence(short, long):
    if not isinstance(short, list) or not isinstance(long, list):
        return False
    it = iter(long)
    return all(any(x == y for y in it) for x in short) and len(set(long)) == len(long)


ENUM_RE = re.compile(r'^(enum|set)\((.*)\)$', re.DOTALL)


def _enum_extended(actual_type, ref_type):
    """MySQL: ref's ENUM/SET is actual's with values appended."""
    if not isinstance(actual_type, str) or not isinstance(ref_type, str):
        return False
    a, r = ENUM_RE.match(actual_type), ENUM_RE.match(ref_type)
    if not a or not r or a.group(1) != r.group(1):
        return False
    return len(r.group(2)) > len(a.group(2)) and r.group(2).startswith(a.group(2) + ',')


# --- parse check and lint ---------------------------------------------------------------------------

def lint_statements(statements, not_expressed, engine, server):
    """Keep the statements that parse as exactly one statement; mark each with migration_lint's findings."""
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint import runner
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint.sources import Source
    from ansible_collections.dbops.maintenance.plugins.module_utils.engines.scripts import split
    missing = runner.missing_parser(engine)
    kept = []
    for st in statements:
        if missing:
            st['findings'] = []
            st['lint'] = 'not linted: %s is not installed' % missing[0]
            kept.append(st)
            continue
        try:
            if engine == 'sqlite':  # one statement as SQLite cuts them (a trigger's body keeps its ';')
                parsed = [Source('<schema_diff>', t) for t in split(st['statement'], engine)]
                err = None
            else:
                parsed = runner.parse(st['statement'], engine)
                err = next((p.error for p in parsed if p.error), None)
        except Exception as e:  # pylint: disable=broad-except
            parsed = None
            err = str(e)
        if not parsed or len(parsed) != 1 or err:
            kind, _sp, name = st['object'].partition(' ')
            not_expressed.append(dict(kind=kind, name=name, what='sql', reason=(
                'the statement built from the reference does not parse as exactly one %s statement (%s): not '
                'returned; is the snapshot file what schema_diff wrote?'
                % (engine, err or '%d statements' % len(parsed or [])))))
            continue
        pg_version = None
        mysql_version = None
        if engine == 'postgresql' and server.get('version_num'):
            pg_version = server['version_num'] // 10000
        elif engine == 'mysql':
            mysql_version = server.get('version')
        out = runner.lint([Source('<schema_diff>', st['statement'])], engine, pg_version=pg_version,
                          mysql_version=mysql_version)
        st['findings'] = [dict(rule=f['rule'], severity=f['severity'], message=f['message']) for f in out['findings']]
        kept.append(st)
    return kept
