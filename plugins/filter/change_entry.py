# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One dbops_changes entry from the registered results of a fixing step's loop."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def change_entry(results, step, database, rehearsal=False, plan=False, check_mode=False):
    """``[entry]`` when an item of ``results`` changed something, else ``[]`` (ready to append to dbops_changes).

    The entry: step, database, rehearsal (ran on the scratch copy), plan (the maintenance playbook's dry
    run), check_mode, the changed items and every statement they ran, in order. Results of a loop that
    failed half-way count too: the items before the failure did change the database.

    The plan and the rehearsal run their steps with ``changed_when: false`` (a recap's ``changed`` counts
    production only), so for them an item that did not fail counts when it lists statements (``queries``: what
    ran on the copy, or would run).
    """
    if results is None:
        results = []
    if not isinstance(results, (list, tuple)):
        raise AnsibleFilterError('change_entry: expected the list of a registered loop\'s results, got %s'
                                 % type(results).__name__)
    quiet = bool(plan or rehearsal)
    changed = [r for r in results if isinstance(r, dict) and (
        r.get('changed') is True or (quiet and not r.get('failed') and not r.get('skipped') and r.get('queries')))]
    if not changed:
        return []
    queries = []
    for r in changed:
        queries.extend(r.get('queries') or [])
    return [{
        'step': step,
        'database': database,
        'rehearsal': bool(rehearsal),
        'plan': bool(plan),
        'check_mode': bool(check_mode or plan),
        'items': [r.get('item', '') for r in changed],
        'queries': queries,
    }]


class FilterModule:
    def filters(self):
        return {'change_entry': change_entry}
