# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_diff's comparison for the other modules: db_verify's `schema` check and migration_status' `drift`.

db_verify: the live schema against a snapshot; the difference must be exactly the declared change (`expected`,
drift entries in the format schema_diff returns: kind, name, what, and optionally reference / actual), so
"snapshot before, snapshot after" proves nothing but the intended change happened.
"""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError
from ansible_collections.dbops.maintenance.plugins.module_utils.schema import compare, run, shadow, snapshot

ENTRY_KEYS = ('kind', 'name', 'what', 'reference', 'actual', 'path', 'table')


def validate_expected(expected):
    """The expected entries are input: each a dict with kind, name, what (texts)."""
    out = []
    for i, e in enumerate(expected or []):
        if not isinstance(e, dict):
            raise DbopsError('schema.expected[%d] is a %s: each entry is a dict with kind, name and what (as '
                             'schema_diff returns them in drift).' % (i, type(e).__name__))
        unknown = set(e) - set(ENTRY_KEYS)
        if unknown:
            raise DbopsError('schema.expected[%d] has unknown key(s) %s (an entry has %s).'
                             % (i, ', '.join(sorted(str(k) for k in unknown)), ', '.join(ENTRY_KEYS)))
        for key in ('kind', 'name', 'what'):
            if key == 'what' and key not in e:
                continue  # the whole object: every difference of it is declared
            if not isinstance(e.get(key), str) or not e.get(key):
                raise DbopsError('schema.expected[%d].%s must be a non-empty text.' % (i, key))
        if e['kind'] not in compare.COMPARED:
            raise DbopsError('schema.expected[%d].kind %r is not one of %s.' % (i, e['kind'], ', '.join(compare.COMPARED)))
        out.append(e)
    return out


def _matches(expected, found):
    for key in ('reference', 'actual'):
        if key in expected and expected[key] != found.get(key):
            return False
    return True


def verify_schema(db, spec, check):
    """db_verify's `schema` check: one check result (check is verify.check)."""
    expected = validate_expected(spec.get('expected'))
    ref = snapshot.load(spec['snapshot'])
    if ref.engine != db.engine:
        raise DbopsError('The snapshot %s is of a %s database; this one is %s.'
                         % (spec['snapshot'], ref.engine, db.engine))
    actual = run.read_database(db)
    matches = compare.ignore_matcher(spec.get('ignore'), run.history_tables(dict(tool=None)))
    drift = compare.diff(ref.without(matches), actual.without(matches))
    unexplained = []
    left = [e for e in expected if 'what' in e]
    # An entry without `what` allows a change of the whole object (kind and name): it explains every difference
    # of that object and requires none (the maintenance playbook declares every object its fixes may touch; on a
    # host where one was already right it does not differ, and whether the fix took is the fix checks' proof).
    objects = [e for e in expected if 'what' not in e]
    for d in drift:
        hit = next((e for e in left if compare.entry_key(e) == compare.entry_key(d) and _matches(e, d)), None)
        if hit is not None:
            left.remove(hit)
            continue
        if not any((e['kind'], e['name']) == (d.get('kind'), d.get('name')) for e in objects):
            unexplained.append(d)
    ok = not unexplained and not left
    if ok:
        msg = ('the schema equals the snapshot' if not drift else
               'the schema differs from the snapshot by exactly the declared change (%d entr%s)'
               % (len(drift), 'y' if len(drift) == 1 else 'ies'))
    else:
        parts = []
        if unexplained:
            parts.append('not declared: %s' % compare.summary(unexplained))
        if left:
            parts.append('declared but not found: %s' % ', '.join(
                ' '.join(str(x) for x in compare.entry_key(e) if x is not None) for e in left))
        msg = '; '.join(parts)
    return check('schema %s' % spec['snapshot'], 'schema', ok,
                 [dict((k, e[k]) for k in ('kind', 'name', 'what') if k in e) for e in expected] or 'no difference',
                 drift, msg)


def status_drift(module, db):
    """migration_status drift: true - the replay comparison, beside the history."""
    reference, info = shadow.replay(module, db, run.read_database, module.params.get('shadow_setup'))
    actual = run.read_database(db)
    out = run.compare_snapshots(reference, actual, dict(module.params, ignore=None, include_drops=False),
                                db.server_info())
    return dict(in_sync=out['in_sync'], summary=out['summary'], drift=out['drift'], sql=out['sql'], shadow=info)
