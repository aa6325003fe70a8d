# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reference Snapshot x actual Snapshot -> drift entries, the summary line, and the ignore patterns.

A drift entry: kind, name (for display: parts joined by '.', the PostgreSQL schema public left out), path
(the exact parts), table (the parent's display name, or None), what ('missing': in the reference only;
'unexpected': in the database only; else the attribute that differs), reference and actual (the values: the
attribute's, or the object's attributes for missing/unexpected). An object whose table is missing or unexpected
is not listed again under it (the table's entry covers it).
"""

from __future__ import annotations

import fnmatch
import re

from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError

# The attributes compared, per kind (the others are kept for the SQL generator).
COMPARED = {
    'schema': (),
    'table': ('engine', 'collation', 'charset', 'comment', 'partitioned', 'without_rowid', 'strict'),
    'column': ('type', 'nullable', 'default', 'collation', 'identity', 'generated', 'extra', 'comment'),
    'primary_key': ('name', 'columns'),
    'unique': ('columns', 'deferrable', 'valid'),
    'index': ('columns', 'prefixes', 'orders', 'unique', 'method', 'predicate', 'include', 'valid', 'comment'),
    'foreign_key': ('name', 'references', 'referenced_columns', 'on_update', 'on_delete', 'valid', 'deferrable'),
    'check': ('definition', 'valid'),
    'exclusion': ('definition', 'deferrable'),
    'enum': ('values',),
    'sequence': ('type', 'start', 'increment', 'min', 'max', 'cycle'),
    'view': ('definition', 'materialized', 'check_option', 'security'),
    'trigger': ('definition', 'enabled', 'timing', 'event', 'order', 'body_sha256'),
    'function': ('kind', 'returns', 'language', 'body_sha256', 'volatility', 'security_definer', 'deterministic',
                 'data_access', 'security'),
}
ORDER = ('schema', 'enum', 'sequence', 'table', 'column', 'primary_key', 'unique', 'index', 'foreign_key', 'check',
         'exclusion', 'view', 'trigger', 'function')
PLURAL = {'schema': 'schemas', 'table': 'tables', 'column': 'columns', 'primary_key': 'primary keys',
          'unique': 'unique constraints', 'index': 'indexes', 'foreign_key': 'foreign keys', 'check': 'CHECK constraints',
          'exclusion': 'exclusion constraints', 'enum': 'enum types', 'sequence': 'sequences', 'view': 'views',
          'trigger': 'triggers', 'function': 'functions'}
SINGULAR = {'schema': 'schema', 'table': 'table', 'column': 'column', 'primary_key': 'primary key',
            'unique': 'unique constraint', 'index': 'index', 'foreign_key': 'foreign key', 'check': 'CHECK constraint',
            'exclusion': 'exclusion constraint', 'enum': 'enum type', 'sequence': 'sequence', 'view': 'view',
            'trigger': 'trigger', 'function': 'function'}


def ignore_matcher(patterns, history_tables):
    """matches(kind, path) for the ignore option: shell patterns (fnmatch, case kept) on the dotted name
    (schema.table, table.column, ...), optionally prefixed by a kind and a colon (index:*_tmp). The history
    tables of the migration tools given are always left out."""
    compiled = []
    for p in patterns or []:
        if not isinstance(p, str) or not p.strip():
            raise DbopsError('ignore: every pattern must be a non-empty text (got %r).' % (p,))
        kind, sep, rest = p.partition(':')
        if sep and kind in COMPARED:
            compiled.append((kind, rest))
        else:
            compiled.append((None, p))
    history = {h for h in history_tables if h}

    def matches(kind, path):
        if kind in ('table',) and (path[-1] in history or '.'.join(path) in history):
            return True
        dotted = '.'.join(path)
        short = '.'.join(path[1:]) if len(path) > 1 else dotted
        for k, pat in compiled:
            if k is not None and k != kind:
                continue
            if fnmatch.fnmatchcase(dotted, pat) or fnmatch.fnmatchcase(short, pat):
                return True
        return False
    return matches


def diff(reference, actual):
    """The drift entries of actual against reference, in ORDER of kinds then by name."""
    out = []
    ref, act = reference.objects, actual.objects
    gone = {}  # table path -> 'missing' / 'unexpected'
    for key in ref:
        if key[0] == 'table' and key not in act:
            gone[key[1]] = 'missing'
    for key in act:
        if key[0] == 'table' and key not in ref:
            gone[key[1]] = 'unexpected'
    schemas_gone = {p[0] for (k, p) in list(ref) + list(act) if k == 'schema' and ((k, p) not in ref or
                                                                                   (k, p) not in act)}
    rank = {k: i for i, k in enumerate(ORDER)}
    loose_views = (reference.engine == 'postgresql' and _major(reference.version) != _major(actual.version))

    def covered(snap, key):
        parent = snap.parents.get(key)
        if parent is not None and parent in gone:
            return True
        kind, path = key
        return (snap.engine == 'postgresql' and kind != 'schema' and len(path) > 1 and path[0] in schemas_gone)

    for key in sorted(set(ref) | set(act), key=lambda k: (rank.get(k[0], 99), k[1])):
        kind, path = key
        in_ref, in_act = key in ref, key in act
        snap = reference if in_ref else actual
        if (not in_ref or not in_act) and covered(snap, key):
            continue
        parent = snap.parents.get(key)
        base = dict(kind=kind, name=snap.display(path), path=list(path),
                    table=snap.display(parent) if parent else None)
        if in_ref and not in_act:
            out.append(dict(base, what='missing', reference=public(kind, ref[key]), actual=None))
        elif in_act and not in_ref:
            out.append(dict(base, what='unexpected', reference=None, actual=public(kind, act[key])))
        else:
            r, a = ref[key], act[key]
            for attr in COMPARED.get(kind, ()):
                if loose_views and kind == 'view' and attr == 'definition':
                    if _loose_view(r.get(attr)) == _loose_view(a.get(attr)):
                        continue
                if _norm(r.get(attr)) != _norm(a.get(attr)):
                    out.append(dict(base, what=attr, reference=r.get(attr), actual=a.get(attr)))
    return out


def _major(version):
    return str(version or '').split('.', maxsplit=1)[0]


QUALIFIER = re.compile(r'\b[A-Za-z_][A-Za-z0-9_$]*\.(?=[A-Za-z_"])')


def _loose_view(text):
    """A view body without qualifiers (x.col -> col): PostgreSQL 16 prints a single table's columns unqualified
    where 15 qualified them, so across major versions bodies are compared this way."""
    return QUALIFIER.sub('', text or '')


def _norm(v):
    return tuple(v) if isinstance(v, list) else v


def public(kind, attrs):
    """The compared attributes of an object (what a missing/unexpected entry shows)."""
    return {k: attrs.get(k) for k in COMPARED.get(kind, ()) if attrs.get(k) is not None}


def summary(drift, limit=3):
    """One line: '3 differences: 3 foreign keys missing (quotas.user_id, resumes.user_id, services.user_id)'."""
    if not drift:
        return 'in sync: no differences'
    groups = {}
    for d in drift:
        how = d['what'] if d['what'] in ('missing', 'unexpected') else 'different'
        groups.setdefault((d['kind'], how), []).append(d['name'] if how != 'different' else
                                                       '%s: %s' % (d['name'], d['what']))
    parts = []
    for (kind, how), names in groups.items():
        shown = ', '.join(names[:limit]) + (', ...' if len(names) > limit else '')
        parts.append('%d %s %s (%s)' % (len(names), PLURAL[kind] if len(names) > 1 else SINGULAR[kind], how, shown))
    return '%d difference%s: %s' % (len(drift), '' if len(drift) == 1 else 's', '; '.join(parts))


def entry_key(d):
    """What identifies a drift entry when an expected list is compared with a found one (db_verify)."""
    return (d.get('kind'), d.get('name'), d.get('what'))
