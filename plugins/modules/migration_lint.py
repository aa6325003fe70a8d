#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: migration_lint
short_description: Find dangerous statements in database migrations before they run
version_added: 0.2.0
description:
  - Reads migrations (a migrations directory of any tool migration_status knows, SQL files, globs, or an SQL
    string), parses every statement with a real SQL parser, and reports the statements that lose data, lock a
    busy table, fail on a populated table or break the running application, each with why it is dangerous and
    the safe alternative.
  - Read-only. Without O(only_pending) it does not connect to any database.
  - B(PostgreSQL) is parsed with C(pglast), which is libpg_query, the parser of the PostgreSQL server itself, so
    what it accepts is exactly what PostgreSQL accepts. B(MySQL/MariaDB) and B(SQLite) are parsed with C(sqlglot)
    in its C(mysql) / C(sqlite) dialect. A statement the parser cannot read is reported (rule C(parse-error)),
    never skipped; a statement C(sqlglot) only accepts as an opaque command is reported as C(unparsed-statement).
  - 'Rules: data loss (C(drop-table), C(drop-column), C(drop-schema), C(truncate), C(delete-without-where),
    C(update-without-where)); statements that fail (C(parse-error), C(add-column-not-null-no-default),
    C(concurrently-in-transaction), C(enum-value-in-transaction), C(duplicate-assignment), C(uncommitted-transaction),
    C(sqlite-alter-unsupported)); table rewrites and long locks (C(add-column-volatile-default), C(column-type-rewrite),
    C(reindex-not-concurrently), C(vacuum-full), C(cluster), C(mysql-algorithm-copy), C(mysql-lock-option),
    C(mysql-charset-convert), C(mysql-add-column-rebuild), C(optimize-table), C(sqlite-table-rebuild)); locks to
    review (C(index-not-concurrently), C(drop-index-not-concurrently), C(detach-partition-not-concurrently),
    C(set-not-null), C(add-unique-without-index), C(constraint-not-valid), C(lock-table), C(missing-lock-timeout),
    C(missing-statement-timeout)); breaking changes (C(rename-table), C(rename-column), C(enum-change),
    C(drop-not-null), C(drop-constraint), C(domain-constraint), C(transaction-nesting), C(sqlite-foreign-keys-off));
    style (C(prefer-bigint), C(prefer-identity), C(char-column), C(prefer-text-field), C(timestamp-without-time-zone),
    C(identifier-too-long), C(enum-value-ordering), C(prefer-robust-statements)); and C(unparsed-statement),
    C(code-migration), C(too-large).'
  - Each rule's severity, engines, example, safe alternative (naming the module of this collection that does the
    change safely, e.g. M(dbops.maintenance.column_ensure), C(dbops.maintenance.index_ensure),
    C(dbops.maintenance.constraint_ensure)) and the rules of squawk, Atlas, strong_migrations and Bytebase that check
    the same hazard are in the collection's C(docs/lint/README.md), one page per rule under C(docs/lint/rules/).
  - C(error) is only for data loss, statements that fail, and statements that rewrite or lock a table for as long as
    it is big; the SQL that Prisma, Django, Rails and Alembic generate by default for common changes gets warnings
    and infos, so it deploys with the default O(fail_on=error).
  - Statements on a table created earlier in the same file are not reported (the table is new and empty), nor
    the C(DROP TABLE) and C(RENAME) of the SQLite table rebuild that Prisma and Django write
    (create C(new_t), copy, drop C(t), rename C(new_t) to C(t)).
  - To accept one finding deliberately, put a comment C(-- dbops:ignore RULE reason) (or C(/* ... */), or C(#) on
    MySQL) on the line before the statement, inside it, or at the end of its last line. Several rules can be
    given separated by commas, or C(all). The reason is required and is returned with the finding; a comment
    without a reason does not count.
  - Migrations written in Python (alembic C(op.execute), Django C(migrations.RunSQL)) have the SQL strings they
    execute linted; the operations they make with the tool's API are not SQL and are not checked (rule
    C(code-migration) says so, with the command that prints their SQL).
options:
  path:
    description:
      - What to lint, on the host the module runs on. Each entry is a migrations directory, an SQL file, or a
        glob (C(migrations/**/*.sql)).
      - With O(tool), a directory is read as that tool's migrations, listed and ordered by migration_status' own
        description of the tool; only what runs on the way up is linted (the C(migrate:up) part of dbmate files,
        the C(+goose Up) part of goose files, the C(.up.sql) files of golang-migrate and sqlx).
      - Without O(tool), a directory is read as all its C(*.sql) files (recursively), in natural order of their paths.
    type: list
    elements: path
  sql:
    description:
      - SQL text to lint, instead of or in addition to O(path).
    type: str
  tool:
    description:
      - The migration tool of the directories in O(path). It also tells which migrations run inside a transaction
        (for the rules C(concurrently-in-transaction) and C(enum-value-in-transaction)), including the tools'
        opt-outs (dbmate C(transaction:false), goose C(NO TRANSACTION), sqlx C(-- no-transaction), Django C(atomic = False)).
    type: str
    choices: [prisma, alembic, flyway, django, golang-migrate, sqlx, knex, rails, dbmate, goose]
  engine:
    description:
      - The SQL dialect of the migrations (and, with O(only_pending), the engine of the database).
  database:
    description:
      - Only with O(only_pending), the database to read the migration history from (for SQLite, the file path).
    required: false
  only_pending:
    description:
      - Lint only the migrations of O(path) that the database has not applied yet, as migration_status sees them.
        Needs O(tool), one directory in O(path), and the connection options.
    type: bool
    default: false
  history_table:
    description:
      - With O(only_pending), the name of the tool's history table when it is not the tool's default.
    type: str
  rules:
    description:
      - Run only these rules (ids as listed above). Default is all rules that apply to O(engine).
    type: list
    elements: str
  ignore:
    description:
      - Do not run these rules.
    type: list
    elements: str
  fail_on:
    description:
      - The task fails when a finding of this severity or higher is not ignored; the message is the summary.
        C(never) only reports.
    type: str
    choices: [error, warning, info, never]
    default: error
  max_file_size:
    description:
      - Bytes. A file (or the O(sql) text) larger than this is not read; it gets one C(too-large) finding that names
        it, so that linting any repository finishes in bounded time and memory.
      - 'Sources over 1 MiB are read on a linear-time path: one scan cuts them into statements (strings, comments,
        dollar quotes and C(COPY ... FROM stdin) data blocks known); C(INSERT ... VALUES) statements are recognised
        from their head without being parsed, C(COPY) data is skipped, and the other statements are parsed in
        chunks.'
    type: int
    default: 20971520
  max_statement_size:
    description:
      - Bytes. A statement larger than this (other than C(INSERT ... VALUES), which is recognised without parsing)
        is not parsed; it gets a C(too-large) finding with its line.
    type: int
    default: 1048576
  max_info_findings:
    description:
      - At most this many C(info) findings (style and preference hints) are listed in RV(findings); the others are
        counted in RV(counts) and RV(unlisted_info) and named in RV(summary), not listed. Errors, warnings and
        ignored findings are always listed. C(-1) lists every finding.
      - Every finding is listed anyway when O(format) writes a report, or when O(fail_on=info).
      - A repository of generated migrations gets thousands of such hints; listing each one in the task result
        costs more time and memory than linting (Ansible copies and serialises every value of a result).
    type: int
    default: 100
  format:
    description:
      - Also write the findings to O(dest) in a format CI reads. C(sarif) is SARIF 2.1.0 (GitHub code scanning
        upload-sarif, and other review tools; ignored findings are results with an in-source suppression giving the
        reason). C(github) is GitHub Actions workflow commands (C(::error file=...,line=...::...)), one per line, to
        print in a step so the findings show as annotations. C(gitlab) is a GitLab code quality report (JSON).
        C(junit) is JUnit XML, one test case per finding.
      - The file is written (atomically) even when the task then fails on O(fail_on), so CI can upload it; it is
        only rewritten when its content changes (the task reports changed then; in check mode it is not written).
    type: str
    choices: [sarif, github, gitlab, junit]
  dest:
    description:
      - With O(format), the file to write, on the host the module runs on. Its directory must exist.
    type: path
  report_root:
    description:
      - With O(format), file paths in the report are made relative to this directory when they are under it (CI
        systems want paths relative to the repository root). Default is the paths as given in O(path).
    type: path
  mysql_version:
    description:
      - MySQL/MariaDB only. Version of the server the migrations will run on, as C(8.0.29), C(10.11) or
        C(10.11.6-MariaDB) (a version from 10 on, or one naming MariaDB, is MariaDB's), for the rules that depend
        on it (C(ALGORITHM=INSTANT) ADD COLUMN from MySQL 8.0.12 and MariaDB 10.3). With O(only_pending) the
        server's own answer to C(SELECT VERSION()) is used, with its flavour (a warning when this option says
        otherwise). Unknown means the rules assume a current server.
    type: str
  pg_version:
    description:
      - PostgreSQL only. Major version of the server the migrations will run on (C(ALTER TYPE ... ADD VALUE)
        inside a transaction fails before 12). With O(only_pending) the server's own version is used (a
        warning when this option says otherwise). Unknown
        means the rule C(enum-value-in-transaction) reports the risk.
    type: int
extends_documentation_fragment:
  - dbops.maintenance.connection
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs it the same way.
  diff_mode:
    support: none
    description: Nothing is changed, so there is nothing to show a difference of.
requirements:
  - pglast >= 6 for O(engine=postgresql), sqlglot >= 25 for O(engine=mysql) and O(engine=sqlite), on the host the
    module runs on (pip install pglast sqlglot). C(sqlglot[c]) (its compiled extension) makes MySQL/SQLite
    parsing about three times faster.
notes:
  - Linting needs no database; run it on the controller with C(delegate_to) C(localhost) in CI, or on the managed
    host with O(only_pending) just before the migration runs, to stop a rollout.
seealso:
  - module: dbops.maintenance.db_verify
author:
  - dbops.maintenance engineers (@dbops)
'''

EXAMPLES = r'''
- name: Lint a Prisma migrations directory in CI (on the controller)
  dbops.maintenance.migration_lint:
    engine: postgresql
    path: prisma/migrations
  delegate_to: localhost

- name: Lint only what the database has not applied yet, and stop the rollout on errors
  dbops.maintenance.migration_lint:
    engine: mysql
    path: /srv/app/db/migrations
    tool: golang-migrate
    only_pending: true
    login_host: "{{ inventory_hostname }}"
    login_user: ops
    login_password: "{{ vault_ops_password }}"
    database: shop

- name: Lint an SQL string, report warnings too, never fail
  dbops.maintenance.migration_lint:
    engine: sqlite
    sql: "ALTER TABLE users ADD COLUMN email TEXT NOT NULL;"
    fail_on: never
  register: lint

- name: Accept one finding deliberately (in the migration file)
  ansible.builtin.debug:
    msg: "-- dbops:ignore drop-table table replaced by accounts in release 41, backed up in OPS-1234"
'''

RETURN = r'''
findings:
  description: Every finding, in the order of the files and statements (ignored ones too, marked).
  returned: always
  type: list
  elements: dict
  contains:
    rule:
      description: Rule id.
      type: str
      sample: drop-table
    severity:
      description: error, warning or info (the rule's, or lower when the rule says this case is less certain).
      type: str
    file:
      description: The file (or C(<sql>)).
      type: str
    line:
      description: Line of the file where the statement starts.
      type: int
    migration:
      description: The tool's id of the migration, when linting a tool's directory.
      type: str
    statement:
      description: The statement, on one line, shortened to 400 characters.
      type: str
    message:
      description: What is wrong with this statement. The rule's title, why and alternative (the "Instead") are
        in RV(rules), once per rule.
      type: str
    ignored:
      description: Whether a C(dbops:ignore) comment accepted the finding.
      type: bool
    ignore_reason:
      description: The reason given in that comment.
      type: str
  sample:
    - rule: drop-table
      severity: error
      file: prisma/migrations/20240101_drop/migration.sql
      line: 3
      statement: DROP TABLE "Session"
      message: DROP TABLE "Session" deletes the table and every row in it.
      ignored: false
rules:
  description: The rules that have findings, by rule id, with the texts every finding of the rule shares (once per
    rule rather than in each of thousands of findings).
  returned: always
  type: dict
  contains:
    title:
      description: Short name of the rule.
      type: str
    severity:
      description: The rule's severity.
      type: str
    why:
      description: Why statements of this kind are dangerous.
      type: str
    alternative:
      description: The safe way to make the change, naming this collection's module/option that does it where there
        is one.
      type: str
  sample:
    drop-table:
      title: DROP TABLE
      severity: error
      why: Dropping a table deletes its rows; the running application fails on the table.
      alternative: Rename the table first and drop it in a later release, after a backup (dbops.maintenance.db_backup).
unlisted_info:
  description: The number of C(info) findings counted but not listed in RV(findings) (O(max_info_findings)).
  returned: always
  type: int
  sample: 0
summary:
  description: The findings as readable lines (C(file:line [severity] rule - message Instead - alternative)).
  returned: always
  type: str
counts:
  description: Findings per severity (not ignored), and the number ignored.
  returned: always
  type: dict
  sample: {error: 1, warning: 2, info: 0, ignored: 1}
files:
  description: Number of files (sources) linted.
  returned: always
  type: int
statements:
  description: Number of statements parsed.
  returned: always
  type: int
dest:
  description: With O(format), the report file written.
  returned: when format
  type: str
pending:
  description: With O(only_pending), the ids of the migrations that were linted.
  returned: when only_pending
  type: list
  elements: str
server_version:
  description: With O(only_pending) on PostgreSQL or MySQL/MariaDB, the server the rules were told about, from
    its own answer (PostgreSQL's major version; MySQL's C(VERSION()) without its suffix).
  returned: when only_pending on PostgreSQL or MySQL/MariaDB
  type: dict
  sample: {engine: mysql, flavour: mariadb, version: "10.11.19"}
'''

import os
import tempfile

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.dbops.maintenance.plugins.module_utils.connection import (
    ModuleFailure, connection_argument_spec, run_module, unexpected,
)
from ansible_collections.dbops.maintenance.plugins.module_utils.engines.base import DbopsError, did_you_mean
from ansible_collections.dbops.maintenance.plugins.module_utils.lint import rules as lint_rules
from ansible_collections.dbops.maintenance.plugins.module_utils.lint import report, runner, sources
from ansible_collections.dbops.maintenance.plugins.module_utils.migrations.registry import TOOLS


def argument_spec():
    spec = connection_argument_spec()
    spec['database']['required'] = False
    spec.update(
        path=dict(type='list', elements='path'),
        sql=dict(type='str'),
        tool=dict(type='str', choices=list(TOOLS)),
        only_pending=dict(type='bool', default=False),
        history_table=dict(type='str'),
        rules=dict(type='list', elements='str'),
        ignore=dict(type='list', elements='str'),
        fail_on=dict(type='str', default='error', choices=['error', 'warning', 'info', 'never']),
        pg_version=dict(type='int'),
        max_file_size=dict(type='int', default=runner.DEFAULT_MAX_FILE_SIZE),
        max_statement_size=dict(type='int', default=runner.DEFAULT_MAX_STATEMENT_SIZE),
        max_info_findings=dict(type='int', default=runner.DEFAULT_MAX_INFO_FINDINGS),
        format=dict(type='str', choices=list(report.FORMATS)),
        dest=dict(type='path'),
        report_root=dict(type='path'),
        mysql_version=dict(type='str'),
    )
    return spec


def validate(module):
    p = module.params
    known = [r.id for r in lint_rules.RULES] + [runner.CODE_RULE.id, runner.TOO_LARGE_RULE.id]
    for opt in ('max_file_size', 'max_statement_size'):
        if p[opt] is not None and p[opt] < 1:
            module.fail_json(msg='%s is a size in bytes, at least 1 (it is %s).' % (opt, p[opt]))
    if p['max_info_findings'] < -1:
        module.fail_json(msg='max_info_findings is a number of findings, 0 or more, or -1 for all of them (it is %s).'
                         % p['max_info_findings'])
    for opt in ('rules', 'ignore'):
        for rule in p[opt] or []:
            if rule not in known:
                module.fail_json(msg='%s lists %r, which is not a rule.%s Rules: %s.' % (
                    opt, rule, did_you_mean(rule, known), ', '.join(known)))
    for rule in p['rules'] or []:
        r = lint_rules.RULES_BY_ID.get(rule)
        if r is not None and p['engine'] not in r.engines:
            module.warn('Rule %s does not apply to %s (only to %s).' % (rule, p['engine'], ', '.join(r.engines)))
    if p['only_pending']:
        if not p['tool']:
            module.fail_json(msg='only_pending needs tool: the migration tool whose history tells what is pending.')
        if not p['path']:
            module.fail_json(msg='only_pending needs path: the migrations directory whose pending migrations to lint.')
        if not p['database']:
            module.fail_json(msg='only_pending reads the migration history: give database and the connection options.')
    if p['pg_version'] is not None and p['engine'] != 'postgresql':
        module.warn('pg_version only matters for engine=postgresql.')
    if p['mysql_version'] is not None:
        if p['engine'] != 'mysql':
            module.warn('mysql_version only matters for engine=mysql.')
        if lint_rules.parse_mysql_version(p['mysql_version']) is None:
            module.fail_json(msg='mysql_version is a version such as 8.0.29 or 10.11 (it is %r).' % p['mysql_version'])
    if bool(p['format']) != bool(p['dest']):
        module.fail_json(msg='format and dest go together: format says what to write, dest where.')
    if p['dest'] and os.path.isdir(p['dest']):
        module.fail_json(msg='dest %s is a directory; give the path of the report file.' % p['dest'])


def work(module, _db):
    p = module.params
    missing = runner.missing_parser(p['engine'])
    if missing:
        module.fail_json(msg=missing_required_lib('%s (pip install %s), to parse %s SQL' % (
            missing[0], missing[0], p['engine'])), exception=str(missing[1]))
    result = dict(changed=False)
    try:
        pending = None
        pg_version, mysql_version = p['pg_version'], p['mysql_version']
        if p['only_pending']:
            from ansible_collections.dbops.maintenance.plugins.module_utils.migrations import status as pending_mod
            pending, server_version = pending_mod.pending_migrations(module, p['path'], p['tool'])
            result['pending'] = list(pending)
            pg_version, mysql_version = server_versions(module, p, server_version, result)
        srcs = sources.collect(paths=p['path'], sql=p['sql'], tool=p['tool'], params=p, pending=pending,
                               max_file_size=p['max_file_size'])
        # every finding when a report is written or info findings fail the task; else at most max_info_findings
        max_info = None if p['format'] or p['fail_on'] == 'info' or p['max_info_findings'] < 0 else \
            p['max_info_findings']
        out = runner.lint(srcs, p['engine'], select=p['rules'], ignore=p['ignore'], pg_version=pg_version,
                          max_statement_size=p['max_statement_size'], mysql_version=mysql_version, max_info=max_info)
    except DbopsError:
        raise
    except Exception as e:  # a parser bug must not hide the rest of the result
        unexpected(module, e, context='while linting')
    result.update(findings=out['findings'], rules=runner.rule_texts(out['findings']), files=out['files'],
                  statements=out['statements'],
                  counts=runner.counts(out['findings'], out['unlisted_info']), summary=runner.summary(out, p['fail_on']),
                  unlisted_info=out['unlisted_info'])
    if p['format']:
        text = report.render(p['format'], out, list(lint_rules.RULES) + [runner.CODE_RULE, runner.TOO_LARGE_RULE],
                             root=p['report_root'])
        result['changed'] = write_report(module, p['dest'], text)
        result['dest'] = p['dest']
    if runner.failing(out['findings'], p['fail_on']):
        raise ModuleFailure(result['summary'], **result)
    return result


def server_versions(module, p, answer, result):
    """(pg_version, mysql_version) with only_pending: the connected server's answer wins over the options
    (a warning when they disagree); result gets server_version (engine, flavour, version)."""
    pg_version, mysql_version = p['pg_version'], p['mysql_version']
    if answer is None:
        return pg_version, mysql_version
    if p['engine'] == 'postgresql':
        if pg_version is not None and pg_version != answer:
            module.warn('pg_version=%s, but the server is PostgreSQL %s: the rules use %s.' % (pg_version, answer, answer))
        result['server_version'] = dict(engine='postgresql', flavour='postgresql', version=str(answer))
        return answer, mysql_version
    if p['engine'] == 'mysql':
        flavour = lint_rules.mysql_flavour(answer)
        given = lint_rules.parse_mysql_version(mysql_version) if mysql_version is not None else None
        told = lint_rules.parse_mysql_version(answer)
        if given is not None and (given != told or lint_rules.mysql_flavour(mysql_version) != flavour):
            module.warn('mysql_version=%s, but the server is %s %s: the rules use the server\'s version.' % (
                mysql_version, 'MariaDB' if flavour == 'mariadb' else 'MySQL', answer))
        result['server_version'] = dict(engine='mysql', flavour=flavour, version=answer.split('-', 1)[0])
        return pg_version, answer
    return pg_version, mysql_version


def write_report(module, dest, text):
    """Write text to dest atomically when it differs; True when it (would have) changed."""
    data = text.encode('utf-8')
    try:
        with open(dest, 'rb') as f:
            if f.read() == data:
                return False
    except OSError:
        pass
    if module.check_mode:
        return True
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        raise DbopsError('Cannot write the report %s: directory %s does not exist.' % (dest, directory))
    fd, tmp = tempfile.mkstemp(prefix='.migration_lint.', dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise DbopsError('Cannot write the report %s: %s' % (dest, e.strerror or e))
    return True


def main():
    run_module(argument_spec(), work, validate=validate, connect=False, required_one_of=[('path', 'sql')])


if __name__ == '__main__':
    main()
