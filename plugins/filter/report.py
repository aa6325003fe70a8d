# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The decisions of the maintenance playbook and its report, out of Jinja: which changes touched production,
a host's outcome, and the run's summary (counts, batches in order, a timeline of phases per host)."""

from __future__ import annotations

import json

from ansible.errors import AnsibleFilterError

OUTCOMES = ('changed', 'unchanged', 'failed', 'rolled_back')
PHASES = ('preflight', 'plan', 'backup', 'rehearse', 'change', 'verify', 'rollback')


def _entries(changes, name):
    if changes is None:
        return []
    if not isinstance(changes, (list, tuple)):
        raise AnsibleFilterError('%s: expected the list dbops_changes, got %s' % (name, type(changes).__name__))
    for i, c in enumerate(changes):
        if not isinstance(c, dict):
            raise AnsibleFilterError('%s: entry %d of dbops_changes is a %s, not a dict' % (name, i, type(c).__name__))
    return list(changes)


def production_changes(changes):
    """The entries of ``dbops_changes`` that ran (or, in check mode, would run) on production: neither the
    rehearsal on the scratch copy nor the maintenance playbook's plan."""
    return [c for c in _entries(changes, 'production_changes') if not c.get('rehearsal') and not c.get('plan')]


def host_outcome(changes, outcome=None, error=None):
    """``outcome`` when the playbook decided one (failed, rolled_back, ...), else failed when there is an error,
    else changed when production changed (would change, in check mode), else unchanged."""
    if outcome:
        if outcome not in OUTCOMES:
            raise AnsibleFilterError('host_outcome: outcome must be one of %s, got %r' % (', '.join(OUTCOMES), outcome))
        return outcome
    if error:
        return 'failed'
    return 'changed' if production_changes(changes) else 'unchanged'


def _number(value, default=None):
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _timeline(record, run_start, span):
    """The phases of one host as bar segments: each mark starts a phase that ends at the next mark."""
    marks = [m for m in (record.get('timeline') or []) if isinstance(m, dict) and _number(m.get('at')) is not None]
    marks.sort(key=lambda m: _number(m['at']))
    segments = []
    for i, m in enumerate(marks):
        if m.get('phase') == 'end':
            break
        start = _number(m['at'])
        end = _number(marks[i + 1]['at']) if i + 1 < len(marks) else start
        segments.append({
            'phase': str(m.get('phase', '')),
            'seconds': round(max(end - start, 0.0), 1),
            'left': round(100.0 * (start - run_start) / span, 2),
            'width': round(max(100.0 * (end - start) / span, 0.5), 2),
        })
    return segments


MAX_DRIFT_ROWS = 200   # drift entries shown per host in the HTML page (the JSON report has them all)
MAX_VALUE_TEXT = 300   # characters of a reference/actual value shown


def _value_text(value):
    if value is None:
        return ''
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE_TEXT else text[:MAX_VALUE_TEXT] + '...'


def _drift_view(drift):
    """The drift record of a host (playbooks/drift_report.yml's dbops_drift) for the page: a label for the glance
    table and the entries as text. None when the host's schema was not compared in this run."""
    if not isinstance(drift, dict) or not drift:
        return None
    entries = drift.get('drift') if isinstance(drift.get('drift'), list) else []
    entries = [e for e in entries if isinstance(e, dict)]
    in_sync = drift.get('in_sync')
    if drift.get('error') or in_sync is None:
        label = 'not compared'
    elif in_sync is True or str(in_sync).lower() == 'true':
        label = 'in sync'
    else:
        label = '%d difference%s' % (len(entries), '' if len(entries) == 1 else 's')
    rows = [dict(kind=str(e.get('kind', '')), name=str(e.get('name', '')), what=str(e.get('what', '')),
                 reference=_value_text(e.get('reference')), actual=_value_text(e.get('actual')))
            for e in entries[:MAX_DRIFT_ROWS]]
    sql = [s if isinstance(s, str) else _value_text(s) for s in (drift.get('sql') or []) if s]
    return dict(label=label, drifted=label.endswith(('difference', 'differences')), compared=label != 'not compared',
                summary=str(drift.get('summary') or ''), error=str(drift.get('error') or ''), rows=rows,
                more=max(len(entries) - MAX_DRIFT_ROWS, 0), sql=sql)


def report_summary(rows, hosts_all=None, batches=None, check_mode=False):
    """The run's summary from the hosts' report records.

    ``counts``: hosts, changed, unchanged, failed, rolled_back, not_run (in check mode ``changed`` counts the hosts
    that would change). ``batches``: the serial batches in the order they ran (the first one of several is the
    canary when it holds one host), each with its hosts' records in that batch's order and the hosts that never ran
    listed last as a batch of their own; ``order``: the host names of the batches that ran. ``hosts``: every
    record with ``production`` (its production changes and their statements), ``statements`` (their count),
    ``open`` (show the statements without a click: failed or changed hosts) and ``timeline`` (bar segments,
    percent of the run's span) and ``drift_view`` (the schema drift recorded by playbooks/drift_report.yml: label,
    entries as text, statements; None when not compared). ``drift`` counts the hosts ``compared`` and
    ``drifted``, and ``has_drift`` says whether any host has a drift record.
    """
    rows = [r for r in (rows or []) if isinstance(r, dict)]
    names = [r.get('host') for r in rows]
    hosts_all = list(hosts_all if hosts_all is not None else names)
    not_run = [h for h in hosts_all if h not in names]
    starts = [_number(m.get('at')) for r in rows for m in (r.get('timeline') or []) if isinstance(m, dict)]
    starts = [s for s in starts if s is not None]
    run_start = min(starts) if starts else 0.0
    span = max((max(starts) - run_start) if starts else 0.0, 0.001)

    by_host = {}
    for r in rows:
        outcome = host_outcome(r.get('changes'), r.get('outcome'), r.get('error'))
        prod = production_changes(r.get('changes'))
        queries = [q for c in prod for q in (c.get('queries') or [])]
        server = r.get('server') or {}
        flavour = server.get('flavour') or r.get('engine') or ''
        by_host[r.get('host')] = dict(
            r, outcome=outcome, production=prod, statements=len(queries),
            open=bool(queries) and outcome in ('changed', 'failed', 'rolled_back'),
            server_label=('%s %s' % (flavour, server.get('version', ''))).strip(),
            timeline=_timeline(r, run_start, span), drift_view=_drift_view(r.get('drift')))

    ordered, seen = [], set()
    for batch in batches or []:
        members = [h for h in (batch or []) if h in by_host and h not in seen]
        seen.update(members)
        if members:
            ordered.append(members)
    rest = sorted((h for h in by_host if h not in seen), key=str)
    if rest:
        ordered.append(rest)
    out_batches = []
    for i, members in enumerate(ordered):
        canary = i == 0 and len(members) == 1 and len(hosts_all) > 1
        out_batches.append({'index': i + 1, 'canary': canary, 'label': 'batch %d%s' % (i + 1, ' (canary)' if canary else ''),
                            'hosts': [by_host[h] for h in members]})
    if not_run:
        out_batches.append({'index': len(out_batches) + 1, 'canary': False, 'label': 'not run',
                            'hosts': [{'host': h, 'outcome': 'not_run', 'timeline': []} for h in not_run]})

    counts = {'hosts': len(hosts_all), 'not_run': len(not_run)}
    for o in OUTCOMES:
        counts[o] = sum(1 for h in by_host.values() if h['outcome'] == o)
    drift_views = [h['drift_view'] for h in by_host.values() if h['drift_view']]
    drift = {'compared': sum(1 for d in drift_views if d['compared']),
             'drifted': sum(1 for d in drift_views if d['drifted'])}
    return {'counts': counts, 'has_drift': bool(drift_views), 'drift': drift, 'check_mode': bool(check_mode), 'batches': out_batches, 'order': ordered,
            'hosts': [by_host[h] for members in ordered for h in members], 'not_run': not_run,
            'span_s': round(span, 1) if starts else 0.0, 'phases': list(PHASES)}


class FilterModule:
    def filters(self):
        return {'production_changes': production_changes, 'host_outcome': host_outcome,
                'report_summary': report_summary}
