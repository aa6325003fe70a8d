# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_diff's work: open the database read-only -> its snapshot -> the reference's snapshot (migrations
replayed into a shadow, a snapshot file, or another database) -> ignore -> compare -> sql -> result.

Also the entry points of the other modules: read_database() (db_verify's `schema` check, migration_status'
`drift: true`) and drift_against_migrations().
"""

from __future__ import annotations

import os
import sqlite3

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import TOOLS
from ansible_collections.dbops.maintenance.plugins.module_utils.schema import compare, shadow, snapshot, sqlgen
from ansible_collections.dbops.maintenance.plugins.module_utils.schema import mysql as my_reader
from ansible_collections.dbops.maintenance.plugins.module_utils.schema import postgresql as pg_reader
from ansible_collections.dbops.maintenance.plugins.module_utils.schema import sqlite as sqlite_reader

EXTRA_HISTORY = ('knex_migrations_lock', 'ar_internal_metadata')


class SqliteTarget:
    """A SQLite database opened read-only (mode=ro): what the readers need of an adapter."""

    engine = 'sqlite'

    def __init__(self, path):
        self.path = os.path.expanduser(path)
        if not os.path.isfile(self.path):
            raise DbopsError('SQLite database file %s does not exist (or is not a file). Check the path (database '
                             'option).' % self.path)
        uri = 'file:%s?mode=ro' % self.path.replace('?', '%3f').replace('#', '%23')
        try:
            self.conn = sqlite3.connect(uri, uri=True, timeout=5, isolation_level=None)
            self.conn.execute('PRAGMA schema_version').fetchone()
        except sqlite3.DatabaseError as e:
            raise DbopsError('Cannot open SQLite database %s: %s' % (self.path, e))

    def server_info(self):
        return dict(engine='sqlite', flavour='sqlite', version=sqlite3.sqlite_version)

    def close(self):
        self.conn.close()


def open_readonly(module, params):
    """The database of params, its session READ ONLY (PostgreSQL, MySQL) or the file opened mode=ro (SQLite)."""
    if params['engine'] == 'sqlite':
        return SqliteTarget(params['database'])
    db = shadow.connect(module, params, module.secrets())
    try:
        if db.engine == 'postgresql':
            db.conn.execute('SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY')
        else:
            with db.conn.cursor() as cur:
                cur.execute('SET SESSION TRANSACTION READ ONLY')
    except Exception:
        shadow.close(db)
        raise
    return db


def close(db):
    if isinstance(db, SqliteTarget):
        db.close()
    else:
        shadow.close(db)


def read_database(db):
    """The Snapshot of a connected adapter (or SqliteTarget)."""
    if db.engine == 'postgresql':
        return pg_reader.read(db)
    if db.engine == 'mysql':
        return my_reader.read(db)
    path = getattr(db, 'path', None) or db.params['database']
    return sqlite_reader.read(db.conn, path, sqlite3.sqlite_version)


def history_tables(params):
    """The history tables left out: the tool's (history_table), or every tool's default when no tool is given."""
    if params.get('tool'):
        names = [params.get('history_table') or TOOLS[params['tool']].table]
    else:
        names = [t.table for t in TOOLS.values()] + ([params['history_table']] if params.get('history_table') else [])
    return set(names) | set(EXTRA_HISTORY)


def reference_snapshot(module, target):
    """(Snapshot, extra result keys) of the reference."""
    p = module.params
    if p['reference'] == 'snapshot':
        snap = snapshot.load(p['snapshot'])
        if snap.engine != target.engine:
            raise DbopsError('The snapshot %s is of a %s database; this database is %s. Compare with a snapshot '
                             'taken from a %s database.' % (p['snapshot'], snap.engine, target.engine, target.engine))
        return snap, dict(reference_info=dict(kind='snapshot', path=p['snapshot'], database=snap.database,
                                              version=snap.version, taken_at=snap.taken_at))
    if p['reference'] == 'database':
        params = shadow.reference_params(module)
        ref = open_readonly(module, params)
        try:
            snap = read_database(ref)
        finally:
            close(ref)
        return snap, dict(reference_info=dict(kind='database', database=p['reference_database']))
    snap, info = shadow.replay(module, target, read_database, p.get('shadow_setup'))
    return snap, dict(shadow=info)


def compare_snapshots(reference, actual, params, server):
    """drift, summary, in_sync, sql, not_expressed of actual against reference (both filtered by ignore)."""
    matches = compare.ignore_matcher(params.get('ignore'), history_tables(params))
    reference = reference.without(matches)
    actual = actual.without(matches)
    drift = compare.diff(reference, actual)
    gen = sqlgen.Generator(reference, actual, params.get('include_drops'),
                           pg_version=(server.get('version_num') or 0) // 10000 or None)
    statements, not_expressed = gen.run(drift)
    statements = sqlgen.lint_statements(statements, not_expressed, actual.engine, server)
    return dict(drift=drift, summary=compare.summary(drift), in_sync=not drift, sql=statements,
                not_expressed=not_expressed, counts=dict(reference=reference.counts(), actual=actual.counts()))


def diff_text(drift):
    """Diff mode: the differing objects as text, the reference's (before) and the database's (after)."""
    before, after = [], []
    for d in drift:
        label = '%s %s' % (d['kind'], d['name'])
        if d['what'] in ('missing', 'unexpected'):
            if d['reference'] is not None:
                before.append('%s: %s\n' % (label, _attrs(d['reference'])))
            if d['actual'] is not None:
                after.append('%s: %s\n' % (label, _attrs(d['actual'])))
        else:
            before.append('%s: %s=%s\n' % (label, d['what'], _value(d['reference'])))
            after.append('%s: %s=%s\n' % (label, d['what'], _value(d['actual'])))
    return ''.join(before), ''.join(after)


def _value(v):
    if isinstance(v, list):
        return '[%s]' % ', '.join(str(x) for x in v)
    return 'null' if v is None else str(v)


def _attrs(a):
    return ', '.join('%s=%s' % (k, _value(v)) for k, v in sorted(a.items())) or '(present)'


def write_dest(path, snap, check_mode):
    """snapshot_dest: (changed, written). Left as is when it holds the same objects already."""
    try:
        old = snapshot.load(path) if os.path.lexists(path) and not os.path.islink(path) else None
    except DbopsError:
        old = None
    if old is not None and old.engine == snap.engine and old.to_json()['objects'] == snap.to_json()['objects']:
        return False
    if not check_mode:
        snapshot.write(path, snap)
    return True


def run(module):
    p = module.params
    target = open_readonly(module, p)
    try:
        server = target.server_info()
        actual = read_database(target)
        result = dict(changed=False, server=server)
        if p.get('snapshot_dest'):
            matches = compare.ignore_matcher(p.get('ignore'), history_tables(p))
            result['changed'] = write_dest(p['snapshot_dest'], actual.without(matches), module.check_mode)
            result['snapshot_dest'] = p['snapshot_dest']
        if not p.get('reference'):
            result.update(summary='snapshot of %d objects written to %s' % (len(actual.objects), p['snapshot_dest']),
                          counts=dict(actual=actual.counts()))
            return result
        reference, extra = reference_snapshot(module, target)
        if p['reference'] == 'migrations' and p['tool'] in shadow.CODE_TOOLS:
            # The application's command ran with an environment of the user's: make sure it did not migrate the
            # target instead of the shadow (schema_diff never writes to the target itself).
            moved = compare.diff(actual, read_database(target))
            if moved:
                raise DbopsError('The %s command changed the database %s while it replayed into the shadow (%s): its '
                                 'environment or configuration points at this database. Check what it did; point it '
                                 'at the shadow with the shadow_url / shadow_database tokens in environment.'
                                 % (p['tool'], p['database'], compare.summary(moved)), moved=moved)
            pending = extra['shadow'].get('pending')
            if pending:
                raise DbopsError('The %s command left %d migration(s) pending in the shadow database (%s): does it '
                                 'take its database from the environment given? (The shadow database is dropped.)'
                                 % (p['tool'], len(pending), ', '.join(str(x) for x in pending[:5])),
                                 shadow=extra['shadow'])
    finally:
        close(target)
    result.update(extra)
    if reference.flavour != actual.flavour:
        module.warn('The reference is %s %s and the database %s %s: types and defaults may be spelled '
                    'differently by the two servers.'
                    % (reference.flavour, reference.version, actual.flavour, actual.version))
    result.update(compare_snapshots(reference, actual, p, server))
    if module._diff:
        before, after = diff_text(result['drift'])
        result['diff'] = dict(before=before, after=after, before_header='reference (%s)' % p['reference'],
                              after_header='database %s' % p['database'])
    return result
