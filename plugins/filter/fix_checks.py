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


class FilterModule:
    def filters(self):
        return {'fix_checks': fix_checks}
