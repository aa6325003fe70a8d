# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One fleet report out of the report parts of several jobs (AWX job slices, a canary job, ...).

Each job's report role hands its part to AWX as a ``set_stats`` artifact under its own key
(``dbops_report_part_<job id>``): AWX passes the artifacts of a workflow's earlier nodes to the next node as
extra vars, merged with a shallow ``dict.update`` (awx/main/models/workflow.py, ``get_job_kwargs`` and
``WorkflowJob.get_effective_artifacts``), so one key shared by the slices would keep only the last slice's."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

PART_PREFIX = 'dbops_report_part_'
# The outcome a host keeps when it has a record in several parts: the most serious one.
PRECEDENCE = ('rolled_back', 'failed', 'changed', 'unchanged')
PART_KEYS = ('hosts', 'not_run')
# What the report role's record of a host holds (roles/report/tasks/main.yml): a part written by hand or by an
# older release may lack some; the HTML report reads them all.
RECORD_DEFAULTS = {'engine': '', 'database': '', 'server': {}, 'outcome': '', 'check_mode': False, 'failed_step': '',
                   'error': '', 'changes': [], 'backup': {}, 'rehearsal': {'status': 'not run'}, 'checks': {},
                   'migrations': {}, 'rollback': {}, 'started': '', 'finished': '', 'duration_s': 0, 'timeline': [],
                   'batch': []}


def part_key(run_id):
    """The artifact key of one job's part: ``dbops_report_part_`` + the run id made a variable name."""
    return PART_PREFIX + re.sub(r'[^A-Za-z0-9_]', '_', str(run_id))


def _parts(value):
    if isinstance(value, dict):
        # the extra vars of the next workflow node (or any dict): the values of the dbops_report_part_* keys
        value = [value[k] for k in sorted(value) if isinstance(k, str) and k.startswith(PART_PREFIX)]
    if not isinstance(value, (list, tuple)):
        raise AnsibleFilterError('report_merge: expected a list of report parts or a dict of dbops_report_part_* '
                                 'variables, got %s' % type(value).__name__)
    parts = []
    for i, p in enumerate(value):
        if not isinstance(p, dict):
            raise AnsibleFilterError('report_merge: part %d is a %s, not a dict (a part is what the report role '
                                     'hands to set_stats as dbops_report_part_<job id>)' % (i, type(p).__name__))
        for k in PART_KEYS:
            if not isinstance(p.get(k, []), list):
                raise AnsibleFilterError('report_merge: part %d (%s): %s must be a list, got %s'
                                         % (i, p.get('run_id', '?'), k, type(p.get(k)).__name__))
        for j, r in enumerate(p.get('hosts', [])):
            if not isinstance(r, dict) or not isinstance(r.get('host'), str) or not r['host']:
                raise AnsibleFilterError('report_merge: part %d (%s): host record %d has no host name'
                                         % (i, p.get('run_id', '?'), j))
        parts.append(p)
    return parts


def _rank(record):
    outcome = record.get('outcome')
    return PRECEDENCE.index(outcome) if outcome in PRECEDENCE else len(PRECEDENCE)


def report_merge(value, check_mode=None):
    """Merge report parts into the input of ``report_summary``: ``rows`` (one record per host), ``hosts_all``
    (every host of every part, each once), ``batches`` (the parts' batches, part after part, in the order the
    jobs finished), ``check_mode``, ``parts`` (run id, job ids, hosts per part) and ``duplicates`` (hosts with a
    record in more than one part: the most serious outcome is kept - rolled back, failed, changed, unchanged - and
    the others are listed, so a host is counted once)."""
    parts = _parts(value)
    if not parts:
        raise AnsibleFilterError('report_merge: no report part to merge (expected dbops_report_part_* extra vars '
                                 'from the earlier workflow nodes, or dbops_report_merge_parts)')
    modes = {bool(p.get('check_mode')) for p in parts}
    if len(modes) > 1:
        kinds = ', '.join('%s: %s' % (p.get('run_id', '?'), 'check' if p.get('check_mode') else 'run') for p in parts)
        raise AnsibleFilterError('report_merge: refusing to merge check-mode parts with real runs (%s); merge the '
                                 'parts of one run' % kinds)
    mode = modes.pop()
    if check_mode is not None and bool(check_mode) != mode:
        raise AnsibleFilterError('report_merge: the parts are %s, the merge expected %s'
                                 % ('check-mode runs' if mode else 'real runs', 'check mode' if check_mode else 'real runs'))
    parts = sorted(parts, key=lambda p: (str(p.get('written', '')), str(p.get('run_id', ''))))

    chosen, seen_in, hosts_all, batches = {}, {}, [], []
    for p in parts:
        run_id = str(p.get('run_id', ''))
        for r in p.get('hosts', []):
            h = r['host']
            seen_in.setdefault(h, []).append({'run_id': run_id, 'outcome': r.get('outcome')})
            old = chosen.get(h)
            # ties: the later part (parts are in the order they were written)
            if old is None or _rank(r) <= _rank(old):
                chosen[h] = dict(RECORD_DEFAULTS, **r, report_part=run_id)
        for h in [r['host'] for r in p.get('hosts', [])] + [h for h in p.get('not_run', []) if isinstance(h, str)]:
            if h not in hosts_all:
                hosts_all.append(h)
        for b in p.get('batches') or []:
            if isinstance(b, list):
                batches.append([h for h in b if isinstance(h, str)])
    duplicates = {h: runs for h, runs in seen_in.items() if len(runs) > 1}
    return {
        'rows': [chosen[h] for h in hosts_all if h in chosen],
        'hosts_all': hosts_all,
        'batches': batches,
        'check_mode': mode,
        'duplicates': duplicates,
        'parts': [{'run_id': str(p.get('run_id', '')), 'job_id': p.get('job_id', ''),
                   'workflow_job_id': p.get('workflow_job_id', ''), 'written': p.get('written', ''),
                   'hosts': len(p.get('hosts', [])), 'not_run': len(p.get('not_run', []))} for p in parts],
    }


class FilterModule:
    def filters(self):
        return {'report_merge': report_merge, 'report_part_key': part_key}
