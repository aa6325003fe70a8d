# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn the schema_fix role's declarations into db_verify checks."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

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
        return {'fix_checks': fix_checks, 'state_plan': state_plan}
