# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""lint(): sources -> parser front-end -> rules -> findings, and the summary text."""

from __future__ import annotations

from ansible_collections.dbops.maintenance.plugins.module_utils.lint import bigfile
from ansible_collections.dbops.maintenance.plugins.module_utils.lint import rules as rules_mod
from ansible_collections.dbops.maintenance.plugins.module_utils.lint.model import Statement

FRONT_ENDS = {}
MAX_STATEMENT_CHARS = 400
CODE_RULE = rules_mod.Rule(
    'code-migration', 'info', rules_mod.ALL, (), 'migration written in code',
    'The migration is code, not SQL: only the SQL strings it passes to execute/RunSQL are linted.',
    'Generate its SQL and lint that file too.', None)

TOO_LARGE_RULE = rules_mod.Rule(
    'too-large', 'error', rules_mod.ALL, (), 'not linted: too large',
    'A file over max_file_size, or a statement over max_statement_size, is not read by the parser (so that linting '
    'any repository finishes, in bounded memory); nothing in it was checked.',
    'Split the file or the statement, raise max_file_size / max_statement_size to lint it, or, for a data file '
    '(a dump, seed data), list it in ignore with this rule once you have checked it by other means.', None)
RULE_INDEX = dict((r.id, r) for r in list(rules_mod.RULES) + [CODE_RULE, TOO_LARGE_RULE])
DEFAULT_MAX_FILE_SIZE = 20 * 1024 * 1024
DEFAULT_MAX_STATEMENT_SIZE = 1024 * 1024
# migration_lint's max_info_findings default, and what migration_apply's lint gate lists
DEFAULT_MAX_INFO_FINDINGS = 100


def _selected(rule, select, ignore):
    return (not select or rule.id in select) and not (ignore and rule.id in ignore)


def missing_parser(engine):
    """(library name, import error) when the parser for engine is not installed, else None."""
    if engine == 'postgresql':
        from ansible_collections.dbops.maintenance.plugins.module_utils.lint import postgres_parser
        return None if postgres_parser.HAS_PGLAST else ('pglast', postgres_parser.PGLAST_IMPORT_ERROR)
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint import sqlglot_parser
    return None if sqlglot_parser.HAS_SQLGLOT else ('sqlglot', sqlglot_parser.SQLGLOT_IMPORT_ERROR)


def parse(text, engine, line_offset=0):
    if engine == 'postgresql':
        from ansible_collections.dbops.maintenance.plugins.module_utils.lint import postgres_parser
        return postgres_parser.parse(text, line_offset)
    from ansible_collections.dbops.maintenance.plugins.module_utils.lint import sqlglot_parser
    return sqlglot_parser.parse(text, engine, line_offset)


def _one_line(stmt, cache):
    """The statement on one line, shortened; computed once per statement however many findings it has."""
    if stmt is None:
        return ''
    key = id(stmt)
    text = cache.get(key)
    if text is None:
        text = ' '.join(stmt.text[:MAX_STATEMENT_CHARS * 4].split())
        if len(text) > MAX_STATEMENT_CHARS:
            text = text[:MAX_STATEMENT_CHARS - 3] + '...'
        cache[key] = text
    return text


def rule_of(rule_id):
    """The Rule of a finding's rule id (the rule table's, or the runner's own two)."""
    return RULE_INDEX[rule_id]


def rule_texts(findings):
    """{rule id: dict(title, severity, why, alternative)} of the rules in findings: what a finding shares with
    every other finding of its rule is returned once per rule, not once per finding (thousands of style findings
    each carrying the same three texts made the result, and Ansible's processing of it, several times bigger)."""
    out = {}
    for f in findings:
        rule_id = f['rule']
        if rule_id not in out:
            r = RULE_INDEX[rule_id]
            out[rule_id] = dict(title=r.title, severity=r.severity, why=r.why, alternative=r.alternative)
    return out


def _finding(source, stmt, rule, message, severity=None, cache=None):
    text = _one_line(stmt, cache if cache is not None else {})
    out = dict(rule=rule.id, severity=severity or rule.severity, file=source.name,
               line=stmt.line if stmt is not None else source.line_offset + 1, statement=text, message=message,
               ignored=False)
    if source.migration is not None:
        out['migration'] = source.migration
    return out


def _apply_ignores(finding, stmt):
    for rule_id, reason, line in stmt.ignores:
        if rule_id not in (finding['rule'], 'all'):
            continue
        if not reason:
            finding['message'] += (' (The dbops:ignore comment on line %d names this rule but gives no reason, so '
                                   'it does not count: write the reason after the rule id.)' % line)
            continue
        finding['ignored'] = True
        finding['ignore_reason'] = reason
        finding['ignore_line'] = line
        return


def parse_source(source, engine, max_statement_size=None):
    """(statements, too_large, collapsed) of one source: big ones by the linear path (lint/bigfile.py)."""
    if bigfile.is_big(source.text, max_statement_size):
        return bigfile.parse(source.text, engine, lambda text, offset: parse(text, engine, offset),
                             source.line_offset, max_statement_size)
    return parse(source.text, engine, source.line_offset), [], 0


def lint(sources, engine, select=None, ignore=None, pg_version=None, max_statement_size=DEFAULT_MAX_STATEMENT_SIZE,
         mysql_version=None, max_info=None):
    """Lint the sources in order. Returns dict(findings, files, statements, unlisted_info).

    mysql_version: '8.0.29' / '10.11' (MariaDB) or a tuple, for the MySQL rules that depend on it.
    max_info: list at most this many info findings (not ignored ones); the others are only counted, in
    unlisted_info, and never built (a repository of generated migrations has thousands of style hints).
    None: all."""
    rules = rules_mod.rules_for(engine, select, ignore)
    ctx = rules_mod.Context(engine, pg_version=pg_version, mysql_version=mysql_version)
    findings = []
    files = set()
    count = 0
    listed_info = unlisted = 0
    for source in sources:
        files.add(source.name)
        if source.note is not None:
            if (not select or CODE_RULE.id in select) and not (ignore and CODE_RULE.id in ignore):
                note = source.note
                findings.append(_finding(source, None, CODE_RULE, (
                    'This is a %s migration; %s. Generate its SQL (%s) and lint that.' % (
                        note['language'],
                        ('%d SQL string(s) it executes were linted' % note['statements']) if note['statements']
                        else 'migration_lint reads SQL only, so nothing in it was checked',
                        note['how'] or 'see the tool\'s documentation'))))
            continue
        if getattr(source, 'skipped', None):
            if _selected(TOO_LARGE_RULE, select, ignore):
                findings.append(_finding(source, None, TOO_LARGE_RULE, source.skipped))
            continue
        statements, too_large, collapsed = parse_source(source, engine, max_statement_size)
        count += collapsed
        if too_large and _selected(TOO_LARGE_RULE, select, ignore):
            for line, size, head in too_large:
                findings.append(_finding(source, Statement(head, line), TOO_LARGE_RULE, (
                    'This statement is %d characters long, more than max_statement_size (%d): it was not parsed '
                    'or checked.' % (size, max_statement_size))))
        count += len(statements)
        wrapped = source.wrapped
        if wrapped == 'multi':
            wrapped = len(statements) > 1
        ctx.reset(wrapped=bool(wrapped))
        cache = {}
        for stmt, rule, message in rules_mod.check_source(statements, ctx, rules):
            severity = None
            if isinstance(message, tuple):
                message, severity = message
            if max_info is not None and listed_info >= max_info and not stmt.ignores and \
                    (severity or rule.severity) == 'info':
                unlisted += 1
                continue
            finding = _finding(source, stmt, rule, message, severity, cache)
            _apply_ignores(finding, stmt)
            if finding['severity'] == 'info' and not finding['ignored'] and max_info is not None:
                if listed_info >= max_info:
                    unlisted += 1
                    continue
                listed_info += 1
            findings.append(finding)
    return dict(findings=findings, files=len(files), statements=count, unlisted_info=unlisted)


def failing(findings, fail_on):
    if fail_on == 'never':
        return []
    level = rules_mod.SEVERITIES.index(fail_on)
    return [f for f in findings if not f['ignored'] and rules_mod.SEVERITIES.index(f['severity']) >= level]


def counts(findings, unlisted_info=0):
    """Findings per severity (ignored ones apart); unlisted_info: info findings lint() counted but did not list."""
    out = dict(error=0, warning=0, info=unlisted_info, ignored=0)
    for f in findings:
        if f['ignored']:
            out['ignored'] += 1
        else:
            out[f['severity']] += 1
    return out


def summary(result, fail_on, max_lines=50):
    findings = result['findings']
    c = counts(findings, result.get('unlisted_info', 0))
    head = '%d error(s), %d warning(s), %d info, %d ignored in %d statement(s) of %d file(s)' % (
        c['error'], c['warning'], c['info'], c['ignored'], result['statements'], result['files'])
    bad = failing(findings, fail_on)
    if bad:
        head = 'migration_lint failed (fail_on=%s): %s' % (fail_on, head)
    else:
        head = 'migration_lint: %s' % head
    lines = [head]
    shown = [f for f in findings if not f['ignored']]
    shown.sort(key=lambda f: -rules_mod.SEVERITIES.index(f['severity']))
    for f in shown[:max_lines]:
        lines.append('%s:%s [%s] %s: %s Instead: %s' % (
            f['file'], f['line'], f['severity'], f['rule'], f['message'], RULE_INDEX[f['rule']].alternative))
    if len(shown) > max_lines:
        lines.append('... and %d more (see findings)' % (len(shown) - max_lines))
    if result.get('unlisted_info'):
        lines.append('%d more info finding(s) counted but not listed (max_info_findings; a report written with '
                     'format lists every finding)' % result['unlisted_info'])
    for f in findings:
        if f['ignored']:
            lines.append('%s:%s [ignored] %s: %s' % (f['file'], f['line'], f['rule'], f['ignore_reason']))
    return '\n'.join(lines)


__all__ = ['lint', 'summary', 'failing', 'counts', 'parse', 'missing_parser', 'Statement', 'rule_of', 'rule_texts']
