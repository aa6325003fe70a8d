# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""migration_lint's findings in the formats CI systems read.

sarif   SARIF 2.1.0 (GitHub code scanning, and most code-review tools); ignored findings are results with an
        inSource suppression carrying the dbops:ignore reason
github  GitHub Actions workflow commands (::error file=...,line=...,title=...::message), one per line
gitlab  GitLab code quality report (a JSON array of issues with a fingerprint)
junit   JUnit XML: one test case per finding (failure, or skipped when ignored), one passing case when clean

Each function takes lint()'s result and returns the text to write. Paths are made relative to ``root`` when they
are under it (CI systems want paths relative to the repository), else left as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from xml.sax.saxutils import escape, quoteattr

TOOL_NAME = 'dbops.maintenance.migration_lint'
TOOL_URI = 'https://example.invalid/dbops/maintenance/docs/lint/README.md'   # galaxy.yml's repository
FORMATS = ('sarif', 'github', 'gitlab', 'junit')
SARIF_LEVEL = {'error': 'error', 'warning': 'warning', 'info': 'note'}
GITLAB_SEVERITY = {'error': 'critical', 'warning': 'major', 'info': 'info'}
GITHUB_COMMAND = {'error': 'error', 'warning': 'warning', 'info': 'notice'}


def relative(path, root):
    if not root or not path or path.startswith('<'):
        return path
    try:
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    except ValueError:  # pragma: no cover - another drive on Windows
        return path
    return path if rel.startswith('..') else rel.replace(os.sep, '/')


def fingerprint(f, path):
    """Stable across runs and line moves: the rule, the file and the statement text."""
    raw = '\0'.join((f['rule'], path or '', f.get('statement') or ''))
    return hashlib.sha256(raw.encode('utf-8', 'replace')).hexdigest()


def _text(f, by_id):
    r = by_id.get(f['rule'])
    return '%s Instead: %s' % (f['message'], r.alternative) if r is not None else f['message']


def sarif(result, rules, root=None, version=None):
    """rules: the Rule objects that may appear (rules.RULES plus runner's own)."""
    used = []
    index = {}
    for f in result['findings']:
        if f['rule'] not in index:
            index[f['rule']] = len(used)
            used.append(f['rule'])
    by_id = dict((r.id, r) for r in rules)
    driver_rules = []
    for rule_id in used:
        r = by_id.get(rule_id)
        entry = dict(id=rule_id, helpUri='%s/rules/%s.md' % (TOOL_URI.rsplit('/', 1)[0], rule_id))
        if r is not None:
            entry.update(name=r.title, shortDescription=dict(text=r.title), fullDescription=dict(text=r.why),
                         help=dict(text='Instead: ' + r.alternative),
                         defaultConfiguration=dict(level=SARIF_LEVEL[r.severity]),
                         properties=dict(engines=list(r.engines)))
        driver_rules.append(entry)
    results = []
    for f in result['findings']:
        path = relative(f['file'], root)
        res = dict(ruleId=f['rule'], ruleIndex=index[f['rule']], level=SARIF_LEVEL[f['severity']],
                   message=dict(text=_text(f, by_id)),
                   locations=[dict(physicalLocation=dict(artifactLocation=dict(uri=path),
                                                         region=dict(startLine=max(1, int(f['line'])))))],
                   partialFingerprints=dict(dbopsFinding=fingerprint(f, path)))
        if f.get('migration'):
            res['properties'] = dict(migration=f['migration'])
        if f['ignored']:
            res['suppressions'] = [dict(kind='inSource', justification=f.get('ignore_reason') or '')]
        results.append(res)
    driver = dict(name=TOOL_NAME, informationUri=TOOL_URI, rules=driver_rules)
    if version:
        driver['version'] = version
    doc = {'$schema': 'https://json.schemastore.org/sarif-2.1.0.json', 'version': '2.1.0',
           'runs': [dict(tool=dict(driver=driver), results=results)]}
    return json.dumps(doc, indent=2, sort_keys=True) + '\n'


def _gh_escape(value, prop=False):
    value = value.replace('%', '%25').replace('\r', '%0D').replace('\n', '%0A')
    if prop:
        value = value.replace(':', '%3A').replace(',', '%2C')
    return value


def github(result, root=None, by_id=None):
    lines = []
    for f in result['findings']:
        if f['ignored']:
            continue
        path = relative(f['file'], root)
        lines.append('::%s file=%s,line=%d,title=%s::%s' % (
            GITHUB_COMMAND[f['severity']], _gh_escape(path, True), max(1, int(f['line'])),
            _gh_escape('%s (%s)' % (f['rule'], by_id[f['rule']].title if f['rule'] in by_id else f['rule']), True),
            _gh_escape(_text(f, by_id))))
    return '\n'.join(lines) + ('\n' if lines else '')


def gitlab(result, root=None, by_id=None):
    issues = []
    for f in result['findings']:
        if f['ignored']:
            continue
        path = relative(f['file'], root)
        issues.append(dict(description='%s: %s' % (f['rule'], _text(f, by_id)), check_name=f['rule'],
                           fingerprint=fingerprint(f, path), severity=GITLAB_SEVERITY[f['severity']],
                           location=dict(path=path, lines=dict(begin=max(1, int(f['line']))))))
    return json.dumps(issues, indent=2, sort_keys=True) + '\n'


def junit(result, root=None, by_id=None):
    cases = []
    failures = skipped = 0
    for f in result['findings']:
        path = relative(f['file'], root)
        name = '%s:%s %s' % (path, f['line'], f['rule'])
        body = '<testcase classname=%s name=%s file=%s line="%d">' % (
            quoteattr(path), quoteattr(name), quoteattr(path), max(1, int(f['line'])))
        if f['ignored']:
            skipped += 1
            body += '<skipped message=%s/>' % quoteattr('ignored: %s' % (f.get('ignore_reason') or ''))
        else:
            failures += 1
            body += '<failure type=%s message=%s>%s</failure>' % (
                quoteattr(f['severity']), quoteattr(f['message']),
                escape('%s\nStatement: %s\nWhy: %s\nInstead: %s' % (
                    f['message'], f.get('statement') or '', *_why_instead(f, by_id))))
        cases.append(body + '</testcase>')
    if not cases:
        cases.append('<testcase classname="migration_lint" name=%s/>' % quoteattr(
            'no findings in %d statement(s) of %d file(s)' % (result['statements'], result['files'])))
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<testsuites name="migration_lint" tests="%d" failures="%d" skipped="%d">\n'
            '<testsuite name=%s tests="%d" failures="%d" errors="0" skipped="%d">\n%s\n</testsuite>\n'
            '</testsuites>\n' % (len(cases), failures, skipped, quoteattr(TOOL_NAME), len(cases), failures, skipped,
                                 '\n'.join(cases)))


def _why_instead(f, by_id):
    r = by_id.get(f['rule'])
    return (r.why, r.alternative) if r is not None else ('', '')


def render(fmt, result, rules, root=None, version=None):
    """rules: the Rule objects that may appear (findings name their rule by id; its texts come from here)."""
    if fmt == 'sarif':
        return sarif(result, rules, root, version)
    by_id = dict((r.id, r) for r in rules)
    if fmt == 'github':
        return github(result, root, by_id)
    if fmt == 'gitlab':
        return gitlab(result, root, by_id)
    if fmt == 'junit':
        return junit(result, root, by_id)
    raise ValueError('unknown format %r' % fmt)
