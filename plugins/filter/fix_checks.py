# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the schema_fix role's declarations into db_verify checks."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.dbops.maintenance.plugins.module_utils.schema.snapshot import quote_part

# db_verify option -> the keys of one of its checks that a schema_fix declaration may carry.
CHECK_KEYS = {
    'enum_values': ('name', 'schema', 'table', 'column', 'values'),
    'columns': ('table', 'column', 'schema', 'type', 'nullable'),
}


def fix_checks(declarations, kind):
    """The db_verify checks of kind ``kind`` that prove ``declarations`` were applied.

    ``declarations`` is dbops_enums (kind enum_values) or dbops_columns (kind columns); keys
    db_verify does not know (before, allow_copy, default, ...) are left out, and so are columns
    declared ``state: absent``.
    """
    if kind not in CHECK_KEYS:
        raise AnsibleFilterError('fix_checks: kind must be one of %s, not %r' % (', '.join(sorted(CHECK_KEYS)), kind))
    if declarations is None:
        return []
    if not isinstance(declarations, (list, tuple)):
        raise AnsibleFilterError('fix_checks: expected a list of dictionaries, got %s' % type(declarations).__name__)
    checks = []
    for index, item in enumerate(declarations):
        if not isinstance(item, dict):
            raise AnsibleFilterError('fix_checks: item %d is a %s, not a dictionary' % (index, type(item).__name__))
        if item.get('state', 'present') == 'absent':
            continue
        checks.append(dict((k, item[k]) for k in CHECK_KEYS[kind] if item.get(k) is not None))
    return checks


OMIT = '__omit_place_holder__'


def _display(engine, parts):
    """The name schema_diff gives the object (snapshot.display): PostgreSQL's public schema left out, parts that
    are not plain identifiers double-quoted."""
    parts = [str(p) for p in parts]
    if engine == 'postgresql' and len(parts) > 1 and parts[0] == 'public':
        parts = parts[1:]
    return '.'.join(quote_part(p) for p in parts)


def _items(declarations, what):
    if declarations is None:
        return []
    if not isinstance(declarations, (list, tuple)):
        raise AnsibleFilterError('schema_objects: %s must be a list of dictionaries, got %s'
                                 % (what, type(declarations).__name__))
    for index, item in enumerate(declarations):
        if not isinstance(item, dict):
            raise AnsibleFilterError('schema_objects: %s item %d is a %s, not a dictionary'
                                     % (what, index, type(item).__name__))
    return list(declarations)


def schema_objects(enums, columns=None, indexes=None, constraints=None, engine='postgresql'):
    """The schema objects the schema_fix declarations may change, as object-level drift entries (kind and name,
    no ``what``) for db_verify's schema_snapshot ``expected``: each allows any difference of that object and
    requires none. A PostgreSQL enum declared by table+column names a type this filter cannot know: declare it
    by ``name`` (or list it in dbops_verify_schema_expected)."""
    if engine not in ('postgresql', 'mysql', 'sqlite'):
        raise AnsibleFilterError('schema_objects: engine must be postgresql, mysql or sqlite, not %r' % (engine,))
    pg = engine == 'postgresql'
    out = []

    def add(kind, *parts):
        if all(isinstance(p, str) and p and not p.startswith(OMIT) for p in parts):
            entry = {'kind': kind, 'name': _display(engine, parts)}
            if entry not in out:
                out.append(entry)

    def given(item, key):
        """The item's key, None when unset or omitted (a playbook's `default(omit)` inside a list of dicts stays
        a placeholder until the module runs)."""
        value = item.get(key)
        if isinstance(value, str):
            return None if value.startswith(OMIT) else value
        # ansible-core 2.19 hands the filter its Omit object itself
        return value if isinstance(value, (list, tuple, dict, int, float)) else None

    def where(item, *rest):
        return ((given(item, 'schema') or 'public',) if pg else ()) + rest

    for e in _items(enums, 'dbops_enums'):
        if given(e, 'name') and pg:
            add('enum', *where(e, given(e, 'name')))
        elif given(e, 'table') and given(e, 'column') and not pg:
            add('column', given(e, 'table'), given(e, 'column'))
    for c in _items(columns, 'dbops_columns'):
        add('column', *where(c, given(c, 'table'), given(c, 'column')))
    for i in _items(indexes, 'dbops_indexes'):
        add('index', *where(i, given(i, 'table'), given(i, 'name')))
    for c in _items(constraints, 'dbops_constraints'):
        kind, table, name = given(c, 'type'), given(c, 'table'), given(c, 'name')
        if kind == 'foreign_key':
            cols = given(c, 'columns')
            if isinstance(cols, (list, tuple)) and cols and all(isinstance(x, str) for x in cols):
                add('foreign_key', *where(c, table, ','.join(cols)))
            if not pg:
                add('index', table, name)  # MySQL creates an index for a foreign key that has none
        elif kind == 'primary_key':
            add('primary_key', *where(c, table))
        elif kind == 'unique':
            add('unique' if pg else 'index', *where(c, table, name))
            if pg:
                add('index', *where(c, table, name))  # built first as an index, then attached
        elif kind == 'check':
            add('check', *where(c, table, name))
    return out


SCHEMA_OPTIONS = ('enums', 'columns', 'indexes', 'constraints')  # schema_fix's order


def state_plan(state, database):
    """The schema_fix plan entry of dbops_changes (what change_entry records for the role run in check mode as
    the maintenance playbook's plan), from a state_check result: the declarations whose plan has statements,
    in schema_fix's order, with those statements. [] when nothing would change."""
    if not isinstance(state, dict):
        raise AnsibleFilterError('state_plan: expected the registered result of state_check, got %s'
                                 % type(state).__name__)
    diffs = [d for d in state.get('differences') or []
             if isinstance(d, dict) and d.get('option') in SCHEMA_OPTIONS and d.get('queries') and not d.get('refused')]
    if any(d.get('module_plan') for d in diffs):
        raise AnsibleFilterError('state_plan: an item needs its module to plan (module_plan); run the plan instead')
    diffs.sort(key=lambda d: (SCHEMA_OPTIONS.index(d['option']), d.get('index', 0)))
    if not diffs:
        return []
    return [{'step': 'schema_fix', 'database': database, 'rehearsal': False, 'plan': True, 'check_mode': True,
             'items': [d.get('declared') for d in diffs], 'queries': [q for d in diffs for q in d['queries']]}]


class FilterModule:
    def filters(self):
        return {'fix_checks': fix_checks, 'state_plan': state_plan, 'schema_objects': schema_objects}
